# ruff: noqa: N815  (field names mirror the CRDs' camelCase so a model reads like the docs)
"""Hand-written models of the custom resources this program declares, limited to the fields
their documentation defines (Strimzi 1.x ``kafka.strimzi.io/v1``, KEDA ``keda.sh/v1alpha1``,
Gateway API ``gateway.networking.k8s.io/v1``). Unknown fields are errors, so a misspelt key
fails ``make preview`` instead of being silently pruned by the API server.

Only the parts this program uses are modelled in depth; sub-objects it never sets (templates,
authentication, ...) are accepted as opaque mappings so valid extensions still pass.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Opaque = dict[str, Any]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectMeta(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Resources(Strict):
    requests: dict[Literal["cpu", "memory"], Quantity] = {}
    limits: dict[Literal["cpu", "memory"], Quantity] = {}


# --- Strimzi ------------------------------------------------------------------------------


class StrimziVolume(Strict):
    id: Annotated[int, Field(ge=0)]
    type: Literal["persistent-claim", "ephemeral"]
    size: Quantity | None = None
    class_: str | None = Field(default=None, alias="class")
    deleteClaim: bool | None = None
    kraftMetadata: Literal["shared"] | None = None
    selector: Opaque | None = None
    sizeLimit: Quantity | None = None


class StrimziStorage(Strict):
    type: Literal["jbod", "ephemeral", "persistent-claim"]
    volumes: list[StrimziVolume] = []


class KafkaNodePoolSpec(Strict):
    replicas: Annotated[int, Field(ge=0)]
    roles: list[Literal["controller", "broker"]] = Field(min_length=1)
    storage: StrimziStorage
    resources: Resources | None = None
    jvmOptions: Opaque | None = None
    template: Opaque | None = None


class GenericKafkaListener(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]{1,11}$")]
    port: Annotated[int, Field(ge=9092)]
    type: Literal["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
    tls: bool
    authentication: Opaque | None = None
    configuration: Opaque | None = None
    networkPolicyPeers: list[Opaque] = []


class KafkaClusterSpec(Strict):
    version: str | None = None
    metadataVersion: str | None = None
    listeners: list[GenericKafkaListener] = Field(min_length=1)
    config: dict[str, str | int | bool | float] = {}
    authorization: Opaque | None = None
    rack: Opaque | None = None
    logging: Opaque | None = None
    metricsConfig: Opaque | None = None
    template: Opaque | None = None
    brokerRackInitImage: str | None = None
    image: str | None = None
    quotas: Opaque | None = None


class EntityOperatorSpec(Strict):
    topicOperator: Opaque | None = None
    userOperator: Opaque | None = None
    template: Opaque | None = None


class KafkaSpec(Strict):
    kafka: KafkaClusterSpec
    entityOperator: EntityOperatorSpec | None = None
    cruiseControl: Opaque | None = None
    kafkaExporter: Opaque | None = None
    clusterCa: Opaque | None = None
    clientsCa: Opaque | None = None
    maintenanceTimeWindows: list[str] | None = None


class KafkaTopicSpec(Strict):
    topicName: str | None = None
    partitions: Annotated[int, Field(ge=1)]
    replicas: Annotated[int, Field(ge=1, le=32767)]
    config: dict[str, str | int | bool | float] = {}


# --- KEDA ---------------------------------------------------------------------------------

KAFKA_TRIGGER_KEYS = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "partitionLimitation",
    "version",
    "sasl",
    "tls",
    "unsafeSsl",
}
"""The kafka scaler's documented metadata parameters (KEDA 2.x "Apache Kafka" scaler)."""
_NUMERIC_KEYS = {"lagThreshold", "activationLagThreshold"}
_BOOLEAN_KEYS = {
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "unsafeSsl",
}


class ScaleTargetRef(Strict):
    name: str
    kind: str | None = None
    apiVersion: str | None = None
    envSourceContainerName: str | None = None


class Trigger(Strict):
    type: str
    metadata: dict[str, str]
    name: str | None = None
    authenticationRef: Opaque | None = None
    metricType: Literal["AverageValue", "Value", "Utilization"] | None = None
    useCachedMetrics: bool | None = None

    @field_validator("metadata")
    @classmethod
    def _kafka_metadata(cls, metadata: dict[str, str], info: Any) -> dict[str, str]:
        if info.data.get("type") != "kafka":
            return metadata
        unknown = set(metadata) - KAFKA_TRIGGER_KEYS
        if unknown:
            raise ValueError(f"unknown kafka trigger metadata {sorted(unknown)}")
        for key in ("bootstrapServers", "consumerGroup"):
            if not metadata.get(key):
                raise ValueError(f"kafka trigger needs {key}")
        for key in _NUMERIC_KEYS & set(metadata):
            if not metadata[key].isdigit():
                raise ValueError(f"{key} must be an integer string, not {metadata[key]!r}")
        for key in _BOOLEAN_KEYS & set(metadata):
            if metadata[key] not in ("true", "false"):
                raise ValueError(f"{key} must be 'true' or 'false', not {metadata[key]!r}")
        if metadata.get("offsetResetPolicy", "latest") not in ("latest", "earliest"):
            raise ValueError("offsetResetPolicy must be latest or earliest")
        return metadata


class HorizontalPodAutoscalerConfig(Strict):
    name: str | None = None
    behavior: Opaque | None = None
    """Checked against the Kubernetes HPA schema by the preview (it is an HPA v2 behavior)."""


class Advanced(Strict):
    restoreToOriginalReplicaCount: bool | None = None
    horizontalPodAutoscalerConfig: HorizontalPodAutoscalerConfig | None = None
    scalingModifiers: Opaque | None = None


class ScaledObjectSpec(Strict):
    scaleTargetRef: ScaleTargetRef
    pollingInterval: Annotated[int, Field(ge=1)] | None = None
    cooldownPeriod: Annotated[int, Field(ge=0)] | None = None
    initialCooldownPeriod: Annotated[int, Field(ge=0)] | None = None
    idleReplicaCount: Annotated[int, Field(ge=0)] | None = None
    minReplicaCount: Annotated[int, Field(ge=0)] | None = None
    maxReplicaCount: Annotated[int, Field(ge=1)] | None = None
    fallback: Opaque | None = None
    advanced: Advanced | None = None
    triggers: list[Trigger] = Field(min_length=1)


# --- Gateway API --------------------------------------------------------------------------


class GatewayClassSpec(Strict):
    controllerName: str
    parametersRef: Opaque | None = None
    description: str | None = None


class RouteNamespaces(Strict):
    from_: Literal["All", "Same", "Selector"] = Field(alias="from")
    selector: Opaque | None = None


class AllowedRoutes(Strict):
    namespaces: RouteNamespaces | None = None
    kinds: list[Opaque] | None = None


class Listener(Strict):
    name: str
    hostname: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
    tls: Opaque | None = None
    allowedRoutes: AllowedRoutes | None = None


class GatewaySpec(Strict):
    gatewayClassName: str
    listeners: list[Listener] = Field(min_length=1)
    addresses: list[Opaque] | None = None
    infrastructure: Opaque | None = None


class ParentRef(Strict):
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str
    sectionName: str | None = None
    port: int | None = None


class PathMatch(Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"]
    value: str


class RouteMatch(Strict):
    path: PathMatch | None = None
    headers: list[Opaque] | None = None
    queryParams: list[Opaque] | None = None
    method: str | None = None


class BackendRef(Strict):
    group: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)]
    weight: int | None = None
    filters: list[Opaque] | None = None


class RouteRule(Strict):
    name: str | None = None
    matches: list[RouteMatch] = []
    filters: list[Opaque] | None = None
    backendRefs: list[BackendRef] = []
    timeouts: Opaque | None = None


class HTTPRouteSpec(Strict):
    parentRefs: list[ParentRef] = Field(min_length=1)
    hostnames: list[str] = []
    rules: list[RouteRule] = Field(min_length=1)


SPEC_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("kafka.strimzi.io/v1", "Kafka"): KafkaSpec,
    ("kafka.strimzi.io/v1", "KafkaNodePool"): KafkaNodePoolSpec,
    ("kafka.strimzi.io/v1", "KafkaTopic"): KafkaTopicSpec,
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObjectSpec,
    ("gateway.networking.k8s.io/v1", "GatewayClass"): GatewayClassSpec,
    ("gateway.networking.k8s.io/v1", "Gateway"): GatewaySpec,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTPRouteSpec,
}


def validate_custom_resource(manifest: dict[str, Any]) -> list[str]:
    """Errors of one custom resource against its documented fields ([] when valid)."""
    key = (manifest.get("apiVersion", ""), manifest.get("kind", ""))
    model = SPEC_MODELS.get(key)
    if model is None:
        return [f"no schema for {key[0]} {key[1]}: add one to infra/crd_models.py"]
    extra = set(manifest) - {"apiVersion", "kind", "metadata", "spec"}
    errors = [f"unexpected top-level field {field!r}" for field in sorted(extra)]
    for part, part_model, value in (
        ("metadata", ObjectMeta, manifest.get("metadata")),
        ("spec", model, manifest.get("spec")),
    ):
        try:
            part_model.model_validate(value)
        except ValueError as error:
            errors.append(f"{part}: {error}")
    return errors
