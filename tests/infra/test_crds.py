"""The CRD sets are fetched from the registries at the versions the stacks deploy."""

from __future__ import annotations

from pathlib import Path

from infra import crds
from infra.config import parse_config
from infra.render import stack_config


def served(source: crds.CrdSource) -> set[tuple[str, str]]:
    return {
        (f"{c['spec']['group']}/{v['name']}", c["spec"]["names"]["kind"])
        for c in crds.load(source)
        for v in c["spec"]["versions"]
        if v.get("served")
    }


def test_each_stack_checks_the_crds_of_its_chart_versions() -> None:
    config = parse_config(stack_config("prod"))
    assert crds.sources_for(config) == [
        crds.CrdSource("strimzi", config.strimzi_chart_version),
        crds.CrdSource("strimzi-access-operator", config.access_operator_chart_version),
        crds.CrdSource("keda", config.keda_chart_version),
        crds.CrdSource("envoy-gateway", config.envoy_gateway_chart_version),
    ]
    nginx = parse_config({**stack_config("prod"), "ingressMode": "ingress-nginx"})
    assert [s.name for s in crds.sources_for(nginx)] == [
        "strimzi",
        "strimzi-access-operator",
        "keda",
    ]


def test_strimzi_1_2_crds_are_generated_and_serve_only_v1() -> None:
    kinds = served(crds.CrdSource("strimzi", "1.2.0"))
    assert {("kafka.strimzi.io/v1", k) for k in ("Kafka", "KafkaNodePool", "KafkaTopic")} <= kinds
    assert not any(version.endswith("/v1beta2") for version, _ in kinds)


def test_the_kafka_access_crd_comes_from_the_access_operators_api_jar() -> None:
    kinds = served(crds.CrdSource("strimzi-access-operator", "0.3.0"))
    assert kinds == {("access.strimzi.io/v1alpha1", "KafkaAccess")}


def test_keda_and_envoy_gateway_crds_come_from_their_go_modules() -> None:
    assert ("keda.sh/v1alpha1", "ScaledObject") in served(crds.CrdSource("keda", "2.20.2"))
    gateway = served(crds.CrdSource("envoy-gateway", "v1.9.1"))
    assert {
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
    } <= gateway


def test_the_generator_runs_with_strimzis_own_arguments(tmp_path: Path) -> None:
    pom = crds.strimzi_api_pom("1.2.0", tmp_path)
    arguments = crds.generator_arguments(pom, tmp_path / "out")
    assert arguments[:2] == ["--label", "app:strimzi"]
    assert "--yaml" in arguments
    outputs = [a for a in arguments if a.startswith("io.strimzi.api.kafka.model.")]
    assert f"io.strimzi.api.kafka.model.kafka.Kafka={tmp_path / 'out' / '040-Crd-kafka.yaml'}" in (
        outputs
    )
    assert all(str(tmp_path / "out") in a for a in outputs)
