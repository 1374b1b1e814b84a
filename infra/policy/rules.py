"""The platform's policy rules, as plain functions so they can be tested without the CLI.

Workload rules apply to pods labelled ``app.kubernetes.io/part-of: kafka-tasks`` (ours): the
third-party charts' own workloads are their maintainers' business, and failing a deploy on them
would only teach people to disable the pack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.k8s import PART_OF

WORKLOAD_TYPES = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
}
KAFKA_TYPE = "kubernetes:kafka.strimzi.io/v1:Kafka"
KAFKA_TOPIC_TYPE = "kubernetes:kafka.strimzi.io/v1:KafkaTopic"
KAFKA_USER_TYPE = "kubernetes:kafka.strimzi.io/v1:KafkaUser"
NETWORK_POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
SCALED_OBJECT_TYPE = "kubernetes:keda.sh/v1alpha1:ScaledObject"


def _our_pod_spec(args: ResourceValidationArgs) -> Mapping[str, Any] | None:
    if args.resource_type not in WORKLOAD_TYPES:
        return None
    labels = (args.props.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/part-of") != PART_OF:
        return None
    template = (args.props.get("spec") or {}).get("template") or {}
    pod_spec: Mapping[str, Any] = template.get("spec") or {}
    return pod_spec


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from pod_spec.get("initContainers") or []
    yield from pod_spec.get("containers") or []


def resource_limits_set(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod_spec = _our_pod_spec(args)
    for container in _containers(pod_spec or {}):
        limits = (container.get("resources") or {}).get("limits") or {}
        missing = [what for what in ("cpu", "memory") if not limits.get(what)]
        if missing:
            report(f"container {container.get('name')!r} has no {'/'.join(missing)} limit", None)


def probes_present(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod_spec = _our_pod_spec(args)
    for container in (pod_spec or {}).get("containers") or []:
        for probe in ("livenessProbe", "readinessProbe"):
            if not container.get(probe):
                report(f"container {container.get('name')!r} has no {probe}", None)


def image_tag_problem(image: str) -> str | None:
    """Why ``image`` is not pinned, or None when it is (by a tag other than latest or digest)."""
    if "@sha256:" in image:
        return None
    last_segment = image.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return f"image {image!r} has no tag (it means latest)"
    if last_segment.rsplit(":", 1)[-1] == "latest":
        return f"image {image!r} uses the latest tag"
    return None


def no_latest_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod_spec = _our_pod_spec(args)
    for container in _containers(pod_spec or {}):
        problem = image_tag_problem(str(container.get("image", "")))
        if problem is not None:
            report(problem, None)


def runs_as_non_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    pod_spec = _our_pod_spec(args)
    if pod_spec is None:
        return
    pod_level = (pod_spec.get("securityContext") or {}).get("runAsNonRoot") is True
    for container in _containers(pod_spec):
        context = container.get("securityContext") or {}
        if not (pod_level or context.get("runAsNonRoot") is True):
            report(f"container {container.get('name')!r} may run as root", None)
        if context.get("allowPrivilegeEscalation") is not False:
            report(f"container {container.get('name')!r} allows privilege escalation", None)


def replicas_within_partitions(args: StackValidationArgs, report: ReportViolation) -> None:
    """KEDA never scales a Kafka consumer past a topic's partitions (unless idle consumers are
    allowed), so a higher maxReplicaCount is a promise the autoscaler will not keep."""
    partitions: dict[str, int] = {}
    for resource in args.resources:
        if resource.resource_type == KAFKA_TOPIC_TYPE:
            spec = resource.props.get("spec") or {}
            name = spec.get("topicName") or (resource.props.get("metadata") or {}).get("name")
            partitions[str(name)] = int(spec.get("partitions", 1))
    for resource in args.resources:
        if resource.resource_type != SCALED_OBJECT_TYPE:
            continue
        spec = resource.props.get("spec") or {}
        max_replicas = int(spec.get("maxReplicaCount", 100))
        for trigger in spec.get("triggers") or []:
            metadata = trigger.get("metadata") or {}
            topic = metadata.get("topic")
            if trigger.get("type") != "kafka" or topic not in partitions:
                continue
            if metadata.get("allowIdleConsumers") == "true":
                continue
            if max_replicas > partitions[topic]:
                report(
                    f"maxReplicaCount {max_replicas} exceeds the {partitions[topic]} partitions "
                    f"of topic {topic!r}",
                    resource.urn,
                )


def kafka_listeners_encrypted_and_authenticated(
    args: ResourceValidationArgs, report: ReportViolation
) -> None:
    """Every client listener of a Kafka cluster is TLS with an authentication type, and the
    cluster authorizes (``simple``): a plain or anonymous listener lets any pod that reaches
    it read every task, and without authorization a user's ACLs mean nothing."""
    if args.resource_type != KAFKA_TYPE:
        return
    kafka = (args.props.get("spec") or {}).get("kafka") or {}
    listeners = kafka.get("listeners") or []
    if not listeners:
        report("the Kafka cluster has no listener", None)
    for listener in listeners:
        name = listener.get("name")
        if listener.get("tls") is not True:
            report(f"listener {name!r} is not TLS (no plain listeners)", None)
        if not (listener.get("authentication") or {}).get("type"):
            report(f"listener {name!r} lets clients in without authentication", None)
    if (kafka.get("authorization") or {}).get("type") != "simple":
        report("the Kafka cluster does not authorize (set kafka.authorization.type: simple)", None)


def kafka_users_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every KafkaUser authenticates and has ACLs naming exactly its topics and groups: no
    wildcard names, no prefixes, no ``All``."""
    if args.resource_type != KAFKA_USER_TYPE:
        return
    spec = args.props.get("spec") or {}
    user = (args.props.get("metadata") or {}).get("name")
    if not (spec.get("authentication") or {}).get("type"):
        report(f"KafkaUser {user!r} has no authentication", None)
    authorization = spec.get("authorization") or {}
    acls = authorization.get("acls") or []
    if authorization.get("type") != "simple" or not acls:
        report(f"KafkaUser {user!r} has no ACLs (authorization type simple)", None)
    for acl in acls:
        resource = acl.get("resource") or {}
        what = f"{resource.get('type')} {resource.get('name')!r}"
        if resource.get("name") == "*" or resource.get("patternType", "literal") != "literal":
            report(f"KafkaUser {user!r} has an ACL on more than one {what}", None)
        if "All" in (acl.get("operations") or []):
            report(f"KafkaUser {user!r} may do All on {what}", None)


def _selects(selector: Mapping[str, Any], pod_labels: Mapping[str, Any]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return not selector.get("matchExpressions") and all(
        pod_labels.get(key) == value for key, value in wanted.items()
    )


def egress_policies_present(args: StackValidationArgs, report: ReportViolation) -> None:
    """Each namespace our Deployments run in denies egress by default, and each of those
    Deployments has an egress policy of its own that lists where it may connect."""
    policies: dict[str, list[Mapping[str, Any]]] = {}
    for resource in args.resources:
        if resource.resource_type == NETWORK_POLICY_TYPE:
            namespace = str((resource.props.get("metadata") or {}).get("namespace"))
            policies.setdefault(namespace, []).append(resource.props.get("spec") or {})
    for resource in args.resources:
        if resource.resource_type != "kubernetes:apps/v1:Deployment":
            continue
        metadata = resource.props.get("metadata") or {}
        if (metadata.get("labels") or {}).get("app.kubernetes.io/part-of") != PART_OF:
            continue
        namespace = str(metadata.get("namespace"))
        name = metadata.get("name")
        egress = [
            p for p in policies.get(namespace, []) if "Egress" in (p.get("policyTypes") or [])
        ]
        if not any(p.get("podSelector") == {} and not p.get("egress") for p in egress):
            report(
                f"namespace {namespace!r} of {name!r} does not deny egress by default", resource.urn
            )
        template = (resource.props.get("spec") or {}).get("template") or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        if not any(
            p.get("egress") and p.get("podSelector") and _selects(p["podSelector"], pod_labels)
            for p in egress
        ):
            report(f"Deployment {name!r} has no egress policy of its own", resource.urn)


POLICIES: list[Policy] = [
    ResourceValidationPolicy(
        name="resource-limits-set",
        description="Every kafka-tasks container sets CPU and memory limits.",
        validate=resource_limits_set,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="probes-present",
        description="Every kafka-tasks container has liveness and readiness probes.",
        validate=probes_present,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="no-latest-tags",
        description="Images are pinned by a tag other than latest, or by digest.",
        validate=no_latest_tags,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="run-as-non-root",
        description="kafka-tasks containers run as non-root without privilege escalation.",
        validate=runs_as_non_root,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="kafka-listeners-encrypted-and-authenticated",
        description="Kafka listeners are TLS with authentication, and the cluster authorizes.",
        validate=kafka_listeners_encrypted_and_authenticated,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="kafka-users-least-privilege",
        description="Every KafkaUser authenticates and has literal, named ACLs without All.",
        validate=kafka_users_least_privilege,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="egress-policies-present",
        description="kafka-tasks namespaces deny egress; each Deployment has its own egress.",
        validate=egress_policies_present,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="replicas-within-partitions",
        description="A ScaledObject's maxReplicaCount does not exceed its topics' partitions.",
        validate=replicas_within_partitions,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
