"""Stack configuration: read once from Pulumi config into one typed, validated model.

Every tunable of the platform is a field of ``StackConfig``; its camelCase alias is the Pulumi
config key (``pulumi config set workerMaxReplicas 6``). ``Pulumi.yaml`` declares the same keys
with the same defaults and a description; ``tests/infra/test_config.py`` fails if the two drift.

Secrets are never put into the model (that would unwrap them into plain strings): they stay
Pulumi ``Output``s in ``StackSecrets``; their presence is checked before any resource is
declared, and the API keys' shape inside an ``apply`` (the value is only known there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from infra.errors import ConfigError
from infra.quantities import parse_quantity
from services.core import topics
from services.core.settings import Namespace
from services.tasks import catalog

PROJECT = "kafka-tasks"
"""The Pulumi project name, which is also the namespace of every config key."""


_IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_HOSTNAME = re.compile(
    r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_K8S_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

KubernetesName = Annotated[str, Field(pattern=_K8S_NAME)]
Quantity = Annotated[str, Field(min_length=1)]
Seconds = Annotated[int, Field(ge=1, le=86_400)]


class StackConfig(BaseModel):
    """All non-secret stack settings. Field docstrings are the descriptions in Pulumi.yaml."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    # --- Namespaces and naming -----------------------------------------------------------
    task_namespace: Namespace = "kt"
    """The services' KT_NAMESPACE: scopes topic names, the consumer group and Redis keys."""
    app_namespace: KubernetesName = "kafka-tasks"
    """Kubernetes namespace of the API, the workers and the in-cluster Redis."""
    kafka_namespace: KubernetesName = "kafka"
    """Kubernetes namespace of the Strimzi operator and the Kafka cluster."""
    keda_namespace: KubernetesName = "keda"
    """Kubernetes namespace of the KEDA operator."""
    ingress_namespace: KubernetesName = "ingress"
    """Kubernetes namespace of the ingress controller or Gateway API implementation."""

    # --- Readiness waits ---------------------------------------------------------------------
    readiness_timeout_seconds: Annotated[int, Field(ge=60, le=7200)] = 900
    """How long pulumi waits for each custom resource (Kafka, topics, ScaledObject) to be Ready."""

    # --- Strimzi and Kafka -------------------------------------------------------------------
    strimzi_chart: str = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
    """Strimzi operator chart: an OCI reference, a chart name in strimziChartRepository, or a
    local chart directory or .tgz (air-gapped clusters)."""
    strimzi_chart_repository: str = ""
    """HTTP(S) Helm repository holding strimziChart; empty for OCI references and local paths."""
    strimzi_chart_version: str = "1.2.0"
    """Version of the strimzi-kafka-operator Helm chart (also selects the CRDs it is checked
    against)."""
    kafka_cluster_name: KubernetesName = "kafka-tasks"
    """Name of the Strimzi Kafka resource; the bootstrap Service is <name>-kafka-bootstrap."""
    kafka_version: str = "4.3.1"
    """Apache Kafka version run by Strimzi (must be one the chart's operator supports)."""
    kafka_metadata_version: str = "4.3-IV0"
    """KRaft metadata version matching kafkaVersion."""
    kafka_node_layout: Literal["combined", "dedicated"] = "dedicated"
    """combined: one node pool with both roles (dev); dedicated: controller and broker pools."""
    kafka_controller_replicas: Annotated[int, Field(ge=1, le=9)] = 3
    """KRaft controllers (dedicated layout only); use an odd number."""
    kafka_broker_replicas: Annotated[int, Field(ge=1, le=100)] = 3
    """Brokers (or combined nodes in the combined layout)."""
    kafka_storage_size: Quantity = "20Gi"
    """Persistent volume size of each Kafka node."""
    kafka_storage_class: str = ""
    """StorageClass of the Kafka volumes; empty uses the cluster default."""
    kafka_replication_factor: Annotated[int, Field(ge=1)] = 3
    """default.replication.factor and the internal topics' replication factor."""
    kafka_min_insync_replicas: Annotated[int, Field(ge=1)] = 2
    """min.insync.replicas of the cluster."""
    kafka_cpu_request: Quantity = "500m"
    """CPU request of each Kafka node."""
    kafka_cpu_limit: Quantity = "2"
    """CPU limit of each Kafka node."""
    kafka_memory_request: Quantity = "2Gi"
    """Memory request of each Kafka node."""
    kafka_memory_limit: Quantity = "2Gi"
    """Memory limit of each Kafka node."""
    kafka_controller_storage_size: Quantity = "10Gi"
    """Persistent volume size of each dedicated KRaft controller (it holds only the metadata
    log)."""
    kafka_controller_cpu_request: Quantity = "250m"
    """CPU request of each dedicated KRaft controller."""
    kafka_controller_cpu_limit: Quantity = "1"
    """CPU limit of each dedicated KRaft controller."""
    kafka_controller_memory_request: Quantity = "1Gi"
    """Memory request of each dedicated KRaft controller."""
    kafka_controller_memory_limit: Quantity = "1Gi"
    """Memory limit of each dedicated KRaft controller."""
    access_operator_chart: str = "oci://quay.io/strimzi-helm/strimzi-access-operator"
    """Strimzi Access Operator chart (copies each component's KafkaUser credentials and the
    cluster CA into the app namespace): an OCI reference, a chart name in
    accessOperatorChartRepository, or a local chart directory or .tgz."""
    access_operator_chart_repository: str = ""
    """HTTP(S) Helm repository holding accessOperatorChart; empty for OCI references and local
    paths."""
    access_operator_chart_version: str = "0.3.0"
    """Version of the Strimzi Access Operator chart (0.3.0 or later speaks Strimzi 1.x's v1
    API; also selects the KafkaAccess CRD it is checked against)."""
    kafka_node_spread: Literal["DoNotSchedule", "ScheduleAnyway"] = "DoNotSchedule"
    """Spread of each Kafka node pool over Kubernetes nodes: DoNotSchedule keeps its pods on
    different nodes (so one node lost is one broker lost); ScheduleAnyway only prefers it."""

    # --- Topics --------------------------------------------------------------------------------
    topic_partitions: Annotated[int, Field(ge=1, le=1000)] = 12
    """Partitions of every task topic and of the retry topic (caps the worker replicas)."""
    dead_letter_partitions: Annotated[int, Field(ge=1, le=1000)] = 1
    """Partitions of the dead-letter topic (nobody consumes it at scale)."""
    topic_replicas: Annotated[int, Field(ge=1)] = 3
    """Replication factor of the task, retry and dead-letter topics."""
    topic_retention_ms: Annotated[int, Field(ge=60_000)] = 604_800_000
    """retention.ms of the task and retry topics."""
    dead_letter_retention_ms: Annotated[int, Field(ge=60_000)] = 2_419_200_000
    """retention.ms of the dead-letter topic; keep it at least topicRetentionMs."""

    # --- Redis ---------------------------------------------------------------------------------
    redis_mode: Literal["internal", "external", "cluster-external"] = "internal"
    """internal: a Valkey StatefulSet declared here; external: managed Redis via redisUrl;
    cluster-external: a managed Redis Cluster / Valkey cluster-mode endpoint via redisUrl
    (ElastiCache, Memorystore, Azure Cache), which the services reach with the cluster
    client (KT_REDIS_CLUSTER)."""
    redis_image: str = "docker.io/valkey/valkey:8.1.4-alpine"
    """Image of the internal Redis (official Valkey image; Redis-protocol compatible)."""
    redis_storage_size: Quantity = "5Gi"
    """Persistent volume size of the internal Redis (append-only file)."""
    redis_storage_class: str = ""
    """StorageClass of the Redis volume; empty uses the cluster default."""
    redis_cpu_request: Quantity = "100m"
    """CPU request of the internal Redis."""
    redis_cpu_limit: Quantity = "1"
    """CPU limit of the internal Redis."""
    redis_memory_request: Quantity = "256Mi"
    """Memory request of the internal Redis."""
    redis_memory_limit: Quantity = "512Mi"
    """Memory limit of the internal Redis; maxmemory is set below it."""
    redis_tls_secret_name: str = ""
    """Existing kubernetes.io/tls Secret in the app namespace (with ca.crt, as cert-manager
    writes it) for the internal Redis: it then serves TLS only and the services connect with
    rediss://. Empty: plain TCP, inside the cluster and behind its NetworkPolicy."""
    redis_external_cidr: str = "0.0.0.0/0"
    """Addresses the API and the workers may reach a managed Redis at (redisMode external);
    narrow it to the Redis endpoint's network."""
    redis_external_port: Annotated[int, Field(ge=1, le=65535)] = 6379
    """Port of the managed Redis (redisMode external), for the services' egress policy."""
    cluster_dns_namespace: KubernetesName = "kube-system"
    """Namespace of the cluster DNS pods (labelled k8s-app=kube-dns): the one other place the
    services' egress policies let them reach."""

    # --- Ingress -------------------------------------------------------------------------------
    ingress_mode: Literal["gateway", "ingress-nginx"] = "gateway"
    """gateway: Envoy Gateway + HTTPRoute (maintained); ingress-nginx: retired in March 2026."""
    api_exposure: Literal["LoadBalancer", "NodePort", "ClusterIP"] = "LoadBalancer"
    """Service type in front of the gateway or ingress controller: LoadBalancer (cloud, or
    MetalLB), NodePort (bare metal), ClusterIP (kubectl port-forward; kind, minikube)."""
    envoy_gateway_chart: str = "oci://docker.io/envoyproxy/gateway-helm"
    """Envoy Gateway chart: an OCI reference, a chart name in envoyGatewayChartRepository, or a
    local chart directory or .tgz."""
    envoy_gateway_chart_repository: str = ""
    """HTTP(S) Helm repository holding envoyGatewayChart; empty for OCI references and paths."""
    envoy_gateway_chart_version: str = "v1.9.1"
    """Version of the Envoy Gateway Helm chart (also selects the Gateway API CRDs checked)."""
    envoy_gateway_image: str = ""
    """Envoy Gateway image for the controller and its certgen Job; empty:
    docker.io/envoyproxy/gateway:<envoyGatewayChartVersion>."""
    ingress_nginx_chart: str = "ingress-nginx"
    """ingress-nginx chart: a chart name in ingressNginxChartRepository, an OCI reference, or a
    local chart directory or .tgz."""
    ingress_nginx_chart_repository: str = "https://kubernetes.github.io/ingress-nginx"
    """HTTP(S) Helm repository holding ingressNginxChart; empty for OCI references and paths."""
    ingress_nginx_chart_version: str = "4.15.1"
    """Version of the ingress-nginx Helm chart (4.15.1 is its final release, March 2026)."""
    api_host: str = "tasks.example.com"
    """Host name clients use to reach the API."""
    api_tls_secret_name: str = ""
    """Existing TLS Secret (in the ingress namespace for gateway, app namespace for nginx);
    empty serves plain HTTP."""

    # --- KEDA and autoscaling ----------------------------------------------------------------
    keda_chart: str = "keda"
    """KEDA chart: a chart name in kedaChartRepository, an OCI reference, or a local chart
    directory or .tgz."""
    keda_chart_repository: str = "https://kedacore.github.io/charts"
    """HTTP(S) Helm repository holding kedaChart; empty for OCI references and local paths."""
    keda_chart_version: str = "2.20.2"
    """Version of the KEDA Helm chart (2.20.2 or later: 2.20.1 marks a ScaledObject not Ready
    whenever its HPA is not actively scaling, which fails the readiness wait)."""
    worker_min_replicas: Annotated[int, Field(ge=0)] = 1
    """KEDA minReplicaCount of the workers (0 allows scale to zero)."""
    worker_max_replicas: Annotated[int, Field(ge=1)] = 12
    """KEDA maxReplicaCount of the workers; at most topicPartitions unless allowIdleConsumers."""
    lag_threshold: Annotated[int, Field(ge=1)] = 50
    """Target consumer lag per worker replica on each task topic."""
    retry_lag_threshold: Annotated[int, Field(ge=1)] = 30
    """Target consumer lag per worker replica on the retry topic."""
    activation_lag_threshold: Annotated[int, Field(ge=0)] = 0
    """Lag above which KEDA activates the workers from zero replicas."""
    polling_interval_seconds: Seconds = 15
    """How often KEDA reads the consumer lag."""
    cooldown_period_seconds: Seconds = 300
    """How long after the last activity KEDA waits before scaling to minReplicaCount 0."""
    scale_up_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = 0
    """HPA scale-up stabilization window."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    """HPA scale-down stabilization window (avoids rebalance storms)."""
    scale_down_percent_per_minute: Annotated[int, Field(ge=1, le=100)] = 50
    """At most this share of the workers is removed per minute."""
    allow_idle_consumers: bool = False
    """Let KEDA scale past the partition count (extra workers sit idle)."""
    limit_to_partitions_with_lag: bool = False
    """Count only partitions with lag when capping replicas (exclusive with allowIdleConsumers)."""

    # --- Application ---------------------------------------------------------------------------
    api_image: str = "ghcr.io/kafka-tasks/kafka-tasks-api:0.1.0"
    """API image, repository:tag or repository@sha256:digest (never latest)."""
    worker_image: str = "ghcr.io/kafka-tasks/kafka-tasks-worker:0.1.0"
    """Worker image, repository:tag or repository@sha256:digest (never latest)."""
    api_replicas: Annotated[int, Field(ge=1, le=100)] = 2
    """API replicas."""
    api_cpu_request: Quantity = "250m"
    """CPU request of each API pod."""
    api_cpu_limit: Quantity = "1"
    """CPU limit of each API pod."""
    api_memory_request: Quantity = "256Mi"
    """Memory request of each API pod."""
    api_memory_limit: Quantity = "512Mi"
    """Memory limit of each API pod."""
    worker_cpu_request: Quantity = "250m"
    """CPU request of each worker pod."""
    worker_cpu_limit: Quantity = "1"
    """CPU limit of each worker pod."""
    worker_memory_request: Quantity = "256Mi"
    """Memory request of each worker pod."""
    worker_memory_limit: Quantity = "512Mi"
    """Memory limit of each worker pod."""
    worker_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 500
    """KT_WORKER_CONCURRENCY: tasks one worker process runs at once."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """KT_LOG_LEVEL of the API and workers."""

    # --- Cross-field rules: each names the keys involved and says how to fix it ------------
    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in _RULES:
            problem = rule(self)
            if problem is not None:
                raise ValueError(problem)
        return self

    # --- Derived values (one place, so components never recompute them differently) ----------
    @property
    def consumed_topics(self) -> list[str]:
        """Topics the workers consume: every task topic of the catalog (a prioritised task's
        high, default and low ones), then the retry topic."""
        task_topics = [
            topic
            for spec in catalog.specs()
            for topic in topics.task_topics(
                self.task_namespace, spec.name, prioritized=spec.prioritized
            )
        ]
        return [*task_topics, topics.retry_topic(self.task_namespace)]

    @property
    def dead_letter_topic(self) -> str:
        return topics.dead_letter_topic(self.task_namespace)

    @property
    def consumer_group(self) -> str:
        return topics.consumer_group(self.task_namespace)

    @property
    def kafka_bootstrap(self) -> str:
        """The TLS listener (SCRAM-SHA-512) of the Strimzi bootstrap Service."""
        return (
            f"{self.kafka_cluster_name}-kafka-bootstrap.{self.kafka_namespace}.svc:{KAFKA_TLS_PORT}"
        )

    @property
    def envoy_gateway_image_ref(self) -> str:
        """The Envoy Gateway image: configured, or the one matching the chart version."""
        return self.envoy_gateway_image or (
            f"{ENVOY_GATEWAY_IMAGE_REPOSITORY}:{self.envoy_gateway_chart_version}"
        )

    def chart_sources(self) -> dict[str, ChartSource]:
        """Where each Helm chart comes from, by the config key prefix that sets it."""
        return {
            "strimziChart": ChartSource(
                "strimziChart",
                self.strimzi_chart,
                self.strimzi_chart_repository,
                self.strimzi_chart_version,
            ),
            "kedaChart": ChartSource(
                "kedaChart", self.keda_chart, self.keda_chart_repository, self.keda_chart_version
            ),
            "envoyGatewayChart": ChartSource(
                "envoyGatewayChart",
                self.envoy_gateway_chart,
                self.envoy_gateway_chart_repository,
                self.envoy_gateway_chart_version,
            ),
            "accessOperatorChart": ChartSource(
                "accessOperatorChart",
                self.access_operator_chart,
                self.access_operator_chart_repository,
                self.access_operator_chart_version,
            ),
            "ingressNginxChart": ChartSource(
                "ingressNginxChart",
                self.ingress_nginx_chart,
                self.ingress_nginx_chart_repository,
                self.ingress_nginx_chart_version,
            ),
        }

    @property
    def kafka_node_count(self) -> int:
        """Nodes that hold data: brokers, or combined nodes."""
        return self.kafka_broker_replicas


ENVOY_GATEWAY_IMAGE_REPOSITORY = "docker.io/envoyproxy/gateway"
"""Where Envoy Gateway publishes its controller image, tagged like its chart (v1.9.1)."""


@dataclass(frozen=True)
class ChartSource:
    """One Helm chart's origin: a public repository by default, a mirror or a local path for
    air-gapped clusters (set per stack with ``<key>``, ``<key>Repository``, ``<key>Version``)."""

    key: str
    chart: str
    repository: str
    version: str

    @property
    def is_oci(self) -> bool:
        return self.chart.startswith("oci://")

    @property
    def is_local(self) -> bool:
        return self.chart.startswith(("/", "./", "../")) or self.chart.endswith(".tgz")

    def problem(self) -> str | None:
        """Why this source cannot be used, naming the keys to fix; None when it can."""
        if (self.is_oci or self.is_local) and self.repository:
            return (
                f"{self.key}={self.chart!r} is an OCI reference or a local path, so "
                f"{self.key}Repository={self.repository!r} would be ignored; empty it."
            )
        if not (self.is_oci or self.is_local) and not self.repository:
            return (
                f"{self.key}={self.chart!r} is a chart name but {self.key}Repository is empty; "
                "set the repository URL, or use oci://... or a local chart path."
            )
        if self.is_local and not Path(self.chart).exists():
            return f"{self.key}={self.chart!r}: no chart directory or archive at that path."
        return None

    def chart_args(self) -> dict[str, Any]:
        """The keyword arguments of ``kubernetes.helm.v4.Chart`` that select this chart."""
        args: dict[str, Any] = {"chart": self.chart, "version": self.version}
        if self.repository:
            args["repository_opts"] = {"repo": self.repository}
        return args


KAFKA_TLS_PORT = 9093
"""Port of the Kafka listener the services and KEDA use: TLS, SCRAM-SHA-512 (the only one)."""
KAFKA_TLS_LISTENER = "tls"
"""Its name in the Kafka resource (the Access Operator picks it by name)."""


def _image_problem(key: str, image: str) -> str | None:
    match = _IMAGE.match(image)
    if match is None:
        return f"{key}={image!r} is not an image reference; use repository:tag or @sha256:digest"
    if match["tag"] is None and match["digest"] is None:
        return f"{key}={image!r} has no tag or digest; pin one (e.g. {image}:0.1.0)"
    if match["tag"] == "latest":
        return f"{key}={image!r} uses the 'latest' tag; pin a version or digest"
    return None


def _rule_replicas_fit_partitions(c: StackConfig) -> str | None:
    if c.worker_max_replicas > c.topic_partitions and not c.allow_idle_consumers:
        return (
            f"workerMaxReplicas={c.worker_max_replicas} exceeds topicPartitions="
            f"{c.topic_partitions}: KEDA never scales a Kafka consumer past the partition count, "
            "so the extra replicas would never appear. Lower workerMaxReplicas, raise "
            "topicPartitions, or set allowIdleConsumers=true on purpose."
        )
    return None


def _rule_min_not_above_max(c: StackConfig) -> str | None:
    if c.worker_min_replicas > c.worker_max_replicas:
        return (
            f"workerMinReplicas={c.worker_min_replicas} is above workerMaxReplicas="
            f"{c.worker_max_replicas}; make workerMinReplicas <= workerMaxReplicas."
        )
    return None


def _rule_a_worker_keeps_time(c: StackConfig) -> str | None:
    if c.worker_min_replicas < 1:
        return (
            "workerMinReplicas=0 would leave no worker running while no topic has lag, and "
            "workers are what queue delayed and held-back tasks when they are due and fire "
            "periodic schedules (none of which shows as lag). Set workerMinReplicas to 1 or more."
        )
    return None


def _rule_topic_names_distinct(c: StackConfig) -> str | None:
    names: dict[str, str] = {}
    for topic in [*c.consumed_topics, c.dead_letter_topic]:
        resource = kafka_topic_resource_name(topic)
        if resource in names:
            return (
                f"topics {names[resource]!r} and {topic!r} would both be the KafkaTopic "
                f"{resource!r} (dots become dashes): rename one of the tasks (a task named "
                "'<name>-high' or '<name>-low' collides with a prioritised task's topics)."
            )
        names[resource] = topic
    return None


def kafka_topic_resource_name(topic: str) -> str:
    """The KafkaTopic's metadata.name for a Kafka topic: dots are legal in both, but dashes
    keep kubectl output readable (spec.topicName carries the exact Kafka name)."""
    return topic.replace(".", "-")


def _rule_idle_consumers_exclusive(c: StackConfig) -> str | None:
    if c.allow_idle_consumers and c.limit_to_partitions_with_lag:
        return (
            "allowIdleConsumers and limitToPartitionsWithLag are both true; KEDA rejects that "
            "trigger. Set one of them to false."
        )
    return None


def _rule_activation_below_threshold(c: StackConfig) -> str | None:
    lowest = min(c.lag_threshold, c.retry_lag_threshold)
    if c.activation_lag_threshold >= lowest:
        return (
            f"activationLagThreshold={c.activation_lag_threshold} is not below the lowest lag "
            f"threshold ({lowest}): tasks would wait unprocessed while the workers are at zero. "
            "Lower activationLagThreshold."
        )
    return None


def _rule_cooldown_after_polling(c: StackConfig) -> str | None:
    if c.cooldown_period_seconds < c.polling_interval_seconds:
        return (
            f"cooldownPeriodSeconds={c.cooldown_period_seconds} is shorter than "
            f"pollingIntervalSeconds={c.polling_interval_seconds}; raise cooldownPeriodSeconds."
        )
    return None


def _rule_kafka_replication(c: StackConfig) -> str | None:
    nodes = c.kafka_node_count
    if c.kafka_replication_factor > nodes:
        return (
            f"kafkaReplicationFactor={c.kafka_replication_factor} exceeds the "
            f"{nodes} broker(s) of kafkaBrokerReplicas; lower it or add brokers."
        )
    if c.topic_replicas > nodes:
        return (
            f"topicReplicas={c.topic_replicas} exceeds the {nodes} broker(s) of "
            "kafkaBrokerReplicas; lower it or add brokers."
        )
    if c.kafka_min_insync_replicas > min(c.kafka_replication_factor, c.topic_replicas):
        return (
            f"kafkaMinInsyncReplicas={c.kafka_min_insync_replicas} is above the replication "
            f"factor ({min(c.kafka_replication_factor, c.topic_replicas)}): every write would "
            "fail. Lower kafkaMinInsyncReplicas."
        )
    return None


def _rule_odd_controller_quorum(c: StackConfig) -> str | None:
    if c.kafka_node_layout == "dedicated" and c.kafka_controller_replicas % 2 == 0:
        return (
            f"kafkaControllerReplicas={c.kafka_controller_replicas} is even; a KRaft quorum "
            "needs an odd number of controllers (1, 3 or 5)."
        )
    return None


def _rule_limits_cover_requests(c: StackConfig) -> str | None:
    for who in ("kafka", "kafka_controller", "redis", "api", "worker"):
        for what in ("cpu", "memory"):
            request_key, limit_key = f"{who}_{what}_request", f"{who}_{what}_limit"
            request, limit = getattr(c, request_key), getattr(c, limit_key)
            try:
                too_small = parse_quantity(limit) < parse_quantity(request)
            except ValueError as error:
                return f"{to_camel(request_key)}/{to_camel(limit_key)}: {error}"
            if too_small:
                return (
                    f"{to_camel(limit_key)}={limit} is below {to_camel(request_key)}={request}; "
                    "a limit must be at least the request."
                )
    return None


def _rule_sizes_are_quantities(c: StackConfig) -> str | None:
    for key in ("kafka_storage_size", "kafka_controller_storage_size", "redis_storage_size"):
        try:
            size = parse_quantity(getattr(c, key))
        except ValueError as error:
            return f"{to_camel(key)}: {error}"
        if size < 2**30 // 2:
            return f"{to_camel(key)}={getattr(c, key)} is below 512Mi; give the volume room."
    return None


def _rule_dead_letters_outlive_tasks(c: StackConfig) -> str | None:
    if c.dead_letter_retention_ms < c.topic_retention_ms:
        return (
            f"deadLetterRetentionMs={c.dead_letter_retention_ms} is shorter than "
            f"topicRetentionMs={c.topic_retention_ms}: failed tasks would vanish before the "
            "tasks themselves. Raise deadLetterRetentionMs."
        )
    return None


def _rule_images_pinned(c: StackConfig) -> str | None:
    for key in ("api_image", "worker_image", "redis_image"):
        problem = _image_problem(to_camel(key), getattr(c, key))
        if problem is not None:
            return problem
    return None


def _rule_chart_sources(c: StackConfig) -> str | None:
    for source in c.chart_sources().values():
        problem = source.problem()
        if problem is not None:
            return problem
    return None


def _rule_api_host(c: StackConfig) -> str | None:
    if not _HOSTNAME.match(c.api_host):
        return f"apiHost={c.api_host!r} is not a DNS host name (e.g. tasks.example.com)."
    return None


_RULES = (
    _rule_replicas_fit_partitions,
    _rule_min_not_above_max,
    _rule_a_worker_keeps_time,
    _rule_topic_names_distinct,
    _rule_idle_consumers_exclusive,
    _rule_activation_below_threshold,
    _rule_cooldown_after_polling,
    _rule_kafka_replication,
    _rule_odd_controller_quorum,
    _rule_limits_cover_requests,
    _rule_sizes_are_quantities,
    _rule_dead_letters_outlive_tasks,
    _rule_images_pinned,
    _rule_chart_sources,
    _rule_api_host,
)


@dataclass(frozen=True)
class StackSecrets:
    """Secret config values; kept as secret Outputs end to end."""

    api_keys: pulumi.Output[str]
    """KT_API_KEYS: a JSON list of API keys."""
    redis_password: pulumi.Output[str] | None
    """Password of the internal Redis (redisMode internal)."""
    redis_url: pulumi.Output[str] | None
    """Full URL of a managed Redis or cluster endpoint, auth included (the external modes)."""


SECRET_KEYS = {
    "apiKeys": "JSON list of API keys accepted by the API (KT_API_KEYS).",
    "redisPassword": "Password of the in-cluster Redis (redisMode internal).",
    "redisUrl": (
        "redis:// or rediss:// URL of a managed Redis (redisMode external) or of a cluster's "
        "configuration endpoint (redisMode cluster-external)."
    ),
}
"""Secret keys and their descriptions; they have no defaults on purpose."""


def checked_api_keys(value: str) -> str:
    """``value`` unchanged if it is what KT_API_KEYS expects (a JSON list of non-empty
    strings), so a malformed secret stops the deploy instead of crash-looping the API."""
    try:
        keys = json.loads(value)
    except json.JSONDecodeError:
        keys = None
    if not (isinstance(keys, list) and keys and all(isinstance(k, str) and k for k in keys)):
        raise ConfigError(
            f"{PROJECT}:apiKeys must be a JSON list of non-empty keys; run: "
            "pulumi config set --secret apiKeys '[\"<key>\"]'"
        )
    return value


def parse_config(raw: Mapping[str, object]) -> StackConfig:
    """Validate raw key/value config into the model, or raise one ``ConfigError``."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(stack config)"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"{PROJECT} stack config is invalid: {key}: {message}"
            if first["loc"]
            else f"{PROJECT} stack config is invalid: {message}"
        ) from None


def load() -> tuple[StackConfig, StackSecrets]:
    """Read the stack's Pulumi config once, before any resource is declared."""
    cfg = pulumi.Config(PROJECT)
    aliases = [field.alias or name for name, field in StackConfig.model_fields.items()]
    raw = {alias: value for alias in aliases if (value := cfg.get(alias)) is not None}
    config = parse_config(raw)

    api_keys = cfg.get_secret("apiKeys")
    if api_keys is None:
        raise ConfigError(
            f"{PROJECT}:apiKeys is not set; run: pulumi config set --secret apiKeys '[\"<key>\"]'"
        )
    redis_password = cfg.get_secret("redisPassword")
    redis_url = cfg.get_secret("redisUrl")
    if config.redis_mode == "internal" and redis_password is None:
        raise ConfigError(
            f"{PROJECT}:redisPassword is not set (redisMode internal); run: "
            "pulumi config set --secret redisPassword <password>"
        )
    if config.redis_mode != "internal" and redis_url is None:
        raise ConfigError(
            f"{PROJECT}:redisUrl is not set (redisMode {config.redis_mode}); run: "
            "pulumi config set --secret redisUrl rediss://:<password>@<host>:6379"
            + ("/0" if config.redis_mode == "external" else "")
        )
    if config.redis_mode == "cluster-external" and redis_url is not None:
        redis_url = redis_url.apply(checked_cluster_url)
    return config, StackSecrets(api_keys.apply(checked_api_keys), redis_password, redis_url)


def checked_cluster_url(value: str) -> str:
    """``value`` unchanged if a cluster client can start from it: redis:// or rediss:// (TLS),
    a host, auth in the URL if any, and no database but 0 (a cluster has only that one)."""
    url = urlsplit(value)
    fix = (
        "run: pulumi config set --secret redisUrl "
        "rediss://<user>:<password>@<configuration endpoint>:6379"
    )
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise ConfigError(
            f"{PROJECT}:redisUrl must be a redis:// or rediss:// URL with a host for "
            f"redisMode cluster-external; {fix}"
        )
    if url.path not in ("", "/", "/0"):
        raise ConfigError(
            f"{PROJECT}:redisUrl selects database {url.path.lstrip('/')!r}, but a Redis "
            f"Cluster has only database 0 (redisMode cluster-external); {fix}"
        )
    return value
