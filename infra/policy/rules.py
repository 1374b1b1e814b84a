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
KAFKA_TOPIC_TYPE = "kubernetes:kafka.strimzi.io/v1:KafkaTopic"
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
    StackValidationPolicy(
        name="replicas-within-partitions",
        description="A ScaledObject's maxReplicaCount does not exceed its topics' partitions.",
        validate=replicas_within_partitions,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
