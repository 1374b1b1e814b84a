"""The offline preview: renders, validates and writes every stack; its validators catch errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import preview
from infra.render import PREVIEW_SECRET, STACKS, RenderedStack
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
    order = ["Chart", "Kafka", "KafkaTopic", "Deployment", "ScaledObject"]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), chain
    assert "KafkaTopic/" in preview.summary(preview.StackReport(stack.stack, stack))


def test_summary_lists_what_the_workloads_wait_for(stack: RenderedStack) -> None:
    worker_line = next(
        line for line in preview.prerequisites(stack, "Deployment") if "app-worker" in line
    )
    assert f"KafkaTopic x{len(stack.kind('KafkaTopic'))}" in worker_line
    assert "StatefulSet" in worker_line
    assert preview.prerequisites(stack, "ScaledObject") == [
        "ScaledObject/autoscaling-scaled-object waits for: Chart, Deployment"
    ]


def manifest(stack: RenderedStack, kind: str, name: str | None = None) -> dict[str, Any]:
    resource = stack.one(kind, name) if name else stack.kind(kind)[0]
    return copy.deepcopy(preview.manifest_of(resource))


def test_rendered_objects_are_schema_valid(stack: RenderedStack) -> None:
    for resource in stack.resources:
        if resource.custom:
            assert preview.validate_manifest(preview.manifest_of(resource)) == [], resource.name


def test_kubernetes_schema_catches_a_wrong_type(stack: RenderedStack) -> None:
    deployment = manifest(stack, "Deployment", contract.API_SERVICE_NAME)
    deployment["spec"]["replicas"] = "two"
    assert preview.validate_manifest(deployment)


def test_kubernetes_schema_catches_a_misspelt_field(stack: RenderedStack) -> None:
    deployment = manifest(stack, "Deployment", contract.API_SERVICE_NAME)
    deployment["spec"]["template"]["spec"]["enableServiceLink"] = False
    assert preview.validate_manifest(deployment)


def test_strimzi_model_refuses_zookeeper(stack: RenderedStack) -> None:
    kafka = manifest(stack, "Kafka")
    kafka["spec"]["zookeeper"] = {"replicas": 3}
    assert any("zookeeper" in error for error in preview.validate_manifest(kafka))


def test_strimzi_model_refuses_the_removed_v1beta2_api(stack: RenderedStack) -> None:
    topic = manifest(stack, "KafkaTopic")
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert preview.validate_manifest(topic) == [
        "no schema for kafka.strimzi.io/v1beta2 KafkaTopic: add one to infra/crd_models.py"
    ]


def test_strimzi_model_catches_a_misspelt_topic_field(stack: RenderedStack) -> None:
    topic = manifest(stack, "KafkaTopic")
    topic["spec"]["partition"] = topic["spec"].pop("partitions")
    assert preview.validate_manifest(topic)


def test_keda_model_catches_unknown_trigger_metadata(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["consumerGroupName"] = "x"
    errors = preview.validate_manifest(scaled)
    assert any("unknown kafka trigger metadata ['consumerGroupName']" in e for e in errors)


def test_keda_model_wants_string_numbers(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = "fifty"
    assert preview.validate_manifest(scaled)


def test_keda_hpa_behavior_is_checked_with_the_hpa_schema(stack: RenderedStack) -> None:
    scaled = manifest(stack, "ScaledObject")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleDown"]["policies"][0]["periodSeconds"] = "a minute"
    assert any("behavior" in e for e in preview.validate_manifest(scaled))


def test_gateway_model_catches_a_bad_listener(stack: RenderedStack) -> None:
    gateway = manifest(stack, "Gateway")
    gateway["spec"]["listeners"][0]["protocol"] = "HTTP3"
    assert preview.validate_manifest(gateway)


def test_preview_exits_non_zero_on_an_invalid_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: dict[str, Any]) -> list[str]:
        return ["spec: broken on purpose"]

    monkeypatch.setattr(preview, "validate_manifest", broken)
    assert preview.main(["dev", "--out", str(tmp_path)]) == 1
