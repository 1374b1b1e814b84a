"""The offline preview: renders, validates and writes every stack; its validators catch errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import preview
from infra.config import parse_config
from infra.manifests import ManifestValidator
from infra.render import PREVIEW_SECRET, STACKS, RenderedStack, stack_config
from services.core import contract


@pytest.fixture(scope="module")
def preview_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    assert preview.main(["--out", str(out)]) == 0
    return out


def test_preview_writes_every_stack_with_secrets_redacted(preview_dir: Path) -> None:
    for stack in STACKS:
        files = sorted((preview_dir / stack).glob("*.yaml"))
        assert len(files) > 25, stack
        text = "".join(f.read_text() for f in files)
        assert PREVIEW_SECRET not in text
        assert "KT_API_KEYS: <secret>" in text
        charts = list(yaml.safe_load_all((preview_dir / stack / "charts.yaml").read_text()))
        assert {c["chart"] for c in charts} >= {
            "oci://quay.io/strimzi-helm/strimzi-kafka-operator",
            "keda",
        }


def test_summary_shows_the_wait_chain(stack: RenderedStack) -> None:
    chain = preview.dependency_chain(stack)
    kinds = [step.split("/")[0] for step in chain]
    order = ["Chart", "Kafka", "KafkaUser", "KafkaAccess", "Deployment", "ScaledObject"]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), chain
    assert "KafkaAccess/" in preview.summary(preview.StackReport(stack.stack, stack))


def test_summary_lists_what_the_workloads_wait_for(stack: RenderedStack) -> None:
    worker_line = next(
        line for line in preview.prerequisites(stack, "Deployment") if "app-worker" in line
    )
    assert f"KafkaTopic x{len(stack.kind('KafkaTopic'))}" in worker_line
    assert "StatefulSet" in worker_line
    assert preview.prerequisites(stack, "ScaledObject") == [
        "ScaledObject/autoscaling-scaled-object waits for: "
        "Chart, Deployment, KafkaAccess, TriggerAuthentication"
    ]


def manifest(stack: RenderedStack, kind: str, name: str | None = None) -> dict[str, Any]:
    resource = stack.one(kind, name) if name else stack.kind(kind)[0]
    return copy.deepcopy(preview.manifest_of(resource))


def validate(stack: RenderedStack, manifest: dict[str, Any]) -> list[str]:
    return ManifestValidator(parse_config(stack_config(stack.stack))).validate(manifest)


def test_rendered_objects_are_schema_valid(stack: RenderedStack) -> None:
    checked = 0
    for resource in stack.resources:
        if resource.custom and "kind" in resource.inputs:
            assert validate(stack, preview.manifest_of(resource)) == [], resource.name
            checked += 1
    assert checked > 25


def test_kubernetes_schema_catches_a_wrong_type(stack: RenderedStack) -> None:
    deployment = manifest(stack, "Deployment", contract.API_SERVICE_NAME)
    deployment["spec"]["replicas"] = "two"
    assert validate(stack, deployment)


def test_kubernetes_schema_catches_a_misspelt_field(stack: RenderedStack) -> None:
    deployment = manifest(stack, "Deployment", contract.API_SERVICE_NAME)
    deployment["spec"]["template"]["spec"]["enableServiceLink"] = False
    assert validate(stack, deployment)


# --- Custom resources against the real CRDs -------------------------------------------------


def test_strimzi_crd_prunes_zookeeper(stack: RenderedStack) -> None:
    kafka = manifest(stack, "Kafka")
    kafka["spec"]["zookeeper"] = {"replicas": 3}
    assert validate(stack, kafka) == [
        "spec.zookeeper: unknown field, the API server would prune it"
    ]


def test_strimzi_1_x_serves_no_v1beta2(stack: RenderedStack) -> None:
    topic = manifest(stack, "KafkaTopic")
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert validate(stack, topic) == [
        "no CRD in strimzi 1.2.0 serves kafka.strimzi.io/v1beta2 KafkaTopic"
    ]


def test_strimzi_crd_catches_a_misspelt_topic_field(stack: RenderedStack) -> None:
    topic = manifest(stack, "KafkaTopic")
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    assert validate(stack, topic) == [
        "spec.partition: unknown field, the API server would prune it"
    ]


def test_strimzi_crd_checks_bounds(stack: RenderedStack) -> None:
    topic = manifest(stack, "KafkaTopic")
    topic["spec"]["partitions"] = 0
    (error,) = validate(stack, topic)
    assert error.startswith("spec.partitions: 0 is less than the minimum of 1")


def test_keda_crd_catches_a_wrong_type(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "twelve"
    assert any(
        e.startswith("spec.maxReplicaCount: 'twelve' is not of type")
        for e in validate(stack, scaled)
    )


def test_keda_crd_cel_rule_refuses_min_above_max(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    scaled["spec"]["minReplicaCount"] = scaled["spec"]["maxReplicaCount"] + 1
    assert validate(stack, scaled) == [
        "spec: minReplicaCount must be less than or equal to maxReplicaCount"
    ]


def test_keda_defaults_are_applied_before_the_cel_rule(stack: RenderedStack) -> None:
    """Without maxReplicaCount the CRD's rule compares with 100 (KEDA's default)."""
    scaled = manifest(stack, "ScaledObject")
    del scaled["spec"]["maxReplicaCount"]
    scaled["spec"]["minReplicaCount"] = 101
    assert validate(stack, scaled) == [
        "spec: minReplicaCount must be less than or equal to maxReplicaCount"
    ]


def test_keda_hpa_behavior_is_checked_with_the_hpa_schema(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["policies"][0]["periodSeconds"] = "a minute"
    assert any("behavior" in e for e in validate(stack, scaled))


def test_gateway_api_cel_rule_refuses_duplicate_listeners(stack: RenderedStack) -> None:
    gateway = manifest(stack, "Gateway")
    listeners = gateway["spec"]["listeners"]
    listeners.append({**listeners[0], "port": 8080})
    assert validate(stack, gateway) == [
        "spec.listeners: duplicate entries for list-map keys ['name']",
        "spec.listeners: Listener name must be unique within the Gateway",
    ]


def test_gateway_api_cel_rule_refuses_tls_on_plain_http(stack: RenderedStack) -> None:
    gateway = manifest(stack, "Gateway")
    gateway["spec"]["listeners"][0]["tls"] = {"mode": "Terminate"}
    assert "spec.listeners: tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']" in (
        validate(stack, gateway)
    )


def test_gateway_api_cel_rule_refuses_a_redirect_with_backends(stack: RenderedStack) -> None:
    route = manifest(stack, "HTTPRoute")
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
    route["spec"]["rules"][0]["filters"] = [redirect]
    assert validate(stack, route) == [
        "spec.rules[0]: RequestRedirect filter must not be used together with backendRefs"
    ]


def test_an_object_of_no_known_crd_is_reported(stack: RenderedStack) -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    (error,) = validate(stack, unknown)
    assert error.startswith("example.com/v1 Widget: not a Kubernetes 1.34.0 kind, and no CRD")
    assert "(strimzi 1.2.0, strimzi-access-operator 0.3.0, keda 2.20.2" in error


def test_built_in_kinds_of_any_api_group_are_checked(stack: RenderedStack) -> None:
    """Charts bring kinds the program never declares (KEDA's APIService, for one)."""
    api_service: dict[str, Any] = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    assert validate(stack, api_service) == []
    api_service["spec"]["versionPriority"] = "high"
    assert validate(stack, api_service)


def test_preview_exits_non_zero_on_an_invalid_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ManifestValidator, manifest: dict[str, Any]) -> list[str]:
        return ["spec: broken on purpose"]

    monkeypatch.setattr(ManifestValidator, "validate", broken)
    assert preview.main(["dev", "--out", str(tmp_path)]) == 1
