"""The real Pulumi engine and Kubernetes provider run the program for every stack.

Built by `make engine` from the Go module proxy (infra/engine/versions.py says which
versions), driven through the Automation API with a local file backend and the provider in
render mode (no cluster: every object it would apply is written to a directory). Each stack
goes through a whole life: preview, up, a second up, a config change, two changes Kafka
would refuse, destroy. The charts come from the stand-ins in tests/infra/charts.

What only the real engine shows is asserted here: Pulumi.yaml's typed config reaching the
program, secrets encrypted in the state, the provider's own rendering of every object
(charts included) agreeing with the mocks, idempotency, exact diffs, and a clean destroy.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from infra import charts
from infra import config as stack_config
from infra.config import PROJECT, StackConfig, parse_config
from infra.engine.check import EngineReport, check_stack, steps
from infra.engine.workspace import EngineStack
from infra.program import define_stack
from infra.render import (
    PREVIEW_SECRET,
    PREVIEW_SECRETS,
    REPO_ROOT,
    STACK_REFERENCE_TYPE,
    STACKS,
    as_config_string,
)
from infra.render import stack_config as committed_config

STAND_INS = Path(__file__).parent / "charts"
OVERRIDES = charts.local_chart_overrides(STAND_INS)
SECRET_SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
"""How Pulumi's state marks a secret value: {SIG_KEY: SIG, "ciphertext": ...}."""
CHANGED_POLLING_SECONDS = 20


@dataclass
class StackLife:
    """Everything one stack went through, recorded once for the tests below."""

    stack: str
    report: EngineReport
    read_configs: list[StackConfig]
    raw_config: dict[str, str | None]
    state_after_up: list[dict[str, Any]]
    checkpoint: dict[str, Any]
    stack_file: dict[str, Any]
    second_up: auto.UpResult
    change_events: list[auto.EngineEvent]
    change_up: auto.UpResult
    rendered_after_change: list[dict[str, Any]]
    refusals: dict[str, str] = field(default_factory=dict)
    topics_after_refusals: list[dict[str, Any]] = field(default_factory=list)
    state_after_destroy: list[dict[str, Any]] = field(default_factory=list)
    rendered_after_destroy: list[dict[str, Any]] = field(default_factory=list)


def _refused(engine: EngineStack, restore: dict[str, Any], **change: Any) -> str:
    """Apply ``change``, expect `pulumi up` to fail, put ``restore`` back; the error text."""
    engine.set(**change)
    try:
        engine.up()
    except auto.CommandError as error:
        message = str(error)
    else:
        message = "up succeeded"
    engine.set(**restore)
    return message


@pytest.fixture(scope="module", params=STACKS)
def life(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StackLife:
    stack: str = request.param
    read_configs: list[StackConfig] = []
    raw_config: dict[str, str | None] = {}

    def observed_program() -> None:
        config, _ = stack_config.load()
        read_configs.append(config)
        if not raw_config:  # what the engine hands the program, before the model reads it
            project = pulumi.Config(PROJECT)
            raw_config.update({key: project.get(key) for key in declared_keys()})
        define_stack()

    report, engine = check_stack(
        stack, tmp_path_factory.mktemp(f"engine-{stack}"), OVERRIDES, program=observed_program
    )
    state_after_up = engine.state_resources()
    checkpoint, stack_file = engine.checkpoint(), engine.stack_file()
    second_up = engine.up()

    events: list[auto.EngineEvent] = []
    engine.set(pollingIntervalSeconds=CHANGED_POLLING_SECONDS)
    engine.preview(on_event=events.append)
    change_up = engine.up()
    rendered_after_change = engine.rendered()

    config = parse_config({**committed_config(stack), **OVERRIDES})
    life = StackLife(
        stack,
        report,
        read_configs,
        raw_config,
        state_after_up,
        checkpoint,
        stack_file,
        second_up,
        events,
        change_up,
        rendered_after_change,
    )
    life.refusals["partitions"] = _refused(
        engine,
        {
            "topicPartitions": config.topic_partitions,
            "workerMaxReplicas": config.worker_max_replicas,
        },
        topicPartitions=config.topic_partitions - 1,
        workerMaxReplicas=min(config.worker_max_replicas, config.topic_partitions - 1),
    )
    if config.kafka_broker_replicas > 1:
        life.refusals["replicas"] = _refused(
            engine,
            {"topicReplicas": config.topic_replicas},
            topicReplicas=config.topic_replicas - 1,
        )
    life.topics_after_refusals = [
        r for r in engine.state_resources() if r["type"].endswith(":KafkaTopic")
    ]
    engine.destroy()
    life.state_after_destroy = engine.state_resources()
    life.rendered_after_destroy = engine.rendered()
    return life


def declared_defaults() -> dict[str, Any]:
    """Pulumi.yaml's non-secret config declarations and their defaults."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    return {key: spec["default"] for key, spec in project["config"].items() if "default" in spec}


def declared_keys() -> list[str]:
    return list(declared_defaults())


def _kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {str(o.get("kind")) for o in objects}


def test_preview_and_up_create_every_resource(life: StackLife) -> None:
    report = life.report
    assert set(report.preview_steps) == {"create"}
    assert report.up_steps == report.preview_steps
    # The state holds what was created, the providers, and the read of the stack's own
    # outputs (infra.topic_layout), nothing else.
    not_created = [
        r["type"]
        for r in life.state_after_up
        if r["type"].startswith("pulumi:providers:") or r["type"] == STACK_REFERENCE_TYPE
    ]
    assert STACK_REFERENCE_TYPE in not_created
    assert report.state_resources == report.up_steps["create"] + len(not_created)


def test_the_engine_renders_what_the_mocks_render_and_the_charts(life: StackLife) -> None:
    comparison = life.report.comparison
    assert comparison.differences == []
    assert comparison.same > 25
    # The stand-in charts' objects: Strimzi's and KEDA's ServiceAccount and Deployment, the
    # Access Operator's ServiceAccount, ClusterRole, ClusterRoleBinding and Deployment, and
    # Envoy Gateway's ServiceAccount, Deployment and Service (its hooks are dropped).
    assert comparison.chart_objects == 11


def test_every_rendered_object_is_valid(life: StackLife) -> None:
    assert life.report.errors == []
    assert {
        "Kafka",
        "KafkaTopic",
        "KafkaUser",
        "KafkaAccess",
        "ScaledObject",
        "TriggerAuthentication",
        "NetworkPolicy",
        "Gateway",
        "HTTPRoute",
    } <= _kinds(life.report.rendered)


def test_no_helm_hook_reaches_the_cluster_and_certgen_is_declared(life: StackLife) -> None:
    for obj in life.report.rendered:
        annotations = obj["metadata"].get("annotations") or {}
        assert charts.HOOK_ANNOTATION not in annotations, obj["metadata"]["name"]
    jobs = [o["metadata"]["name"] for o in life.report.rendered if o["kind"] == "Job"]
    assert jobs == ["envoy-gateway-certgen"]


def test_the_engine_hands_the_program_pulumi_yamls_defaults(life: StackLife) -> None:
    """Every key Pulumi.yaml declares reaches the program, from the stack file or, for a key
    the stack file leaves out, as Pulumi.yaml's typed default applied by the engine."""
    stack_values = {
        key.removeprefix(f"{PROJECT}:"): value
        for key, value in life.stack_file["config"].items()
        if not isinstance(value, dict)
    }
    defaults = declared_defaults()
    assert set(life.raw_config) == set(defaults)
    from_defaults = 0
    for key, default in defaults.items():
        expected = stack_values.get(key, as_config_string(default))
        assert life.raw_config[key] == expected, key
        from_defaults += key not in stack_values
    assert from_defaults > 20  # most keys are defaults, so this is the engine's doing


def test_the_program_reads_the_typed_config_pulumi_yaml_declares(life: StackLife) -> None:
    expected = parse_config({**committed_config(life.stack), **OVERRIDES})
    assert life.read_configs[0] == expected
    assert len(life.read_configs) >= 4  # the program ran for every preview and up


def test_secrets_stay_encrypted_in_the_stack_file_and_the_state(life: StackLife) -> None:
    for key in ("apiKeys", "redisPassword"):
        assert set(life.stack_file["config"][f"kafka-tasks:{key}"]) == {"secure"}
    stored = json.dumps(life.checkpoint)
    for plain in (PREVIEW_SECRET, '["preview"]'):
        assert plain not in stored
        assert base64.b64encode(plain.encode()).decode() not in stored
    resources = life.checkpoint["checkpoint"]["latest"]["resources"]
    for name in ("app-api-secrets", "app-worker-secrets", "redis-auth", "redis-acl"):
        secret = next(r for r in resources if r["urn"].endswith(f"::{name}"))
        for value in (secret["inputs"]["data"], secret["outputs"]["data"]):
            assert value[SECRET_SIG_KEY] == SECRET_SIG
            assert value["ciphertext"]


def test_a_second_up_changes_nothing(life: StackLife) -> None:
    """Everything is "same"; the one "read" is the stack's reference to its own outputs,
    read again on every run by design (infra.topic_layout)."""
    changes = steps(life.second_up.summary.resource_changes or {})
    assert changes == {"same": life.report.up_steps["create"], "read": 1}


def test_a_config_change_shows_exactly_the_expected_diff(life: StackLife) -> None:
    changed = {
        (
            event.resource_pre_event.metadata.op.value,
            event.resource_pre_event.metadata.urn.split("::")[-1],
        )
        for event in life.change_events
        if event.resource_pre_event is not None
        and event.resource_pre_event.metadata.op.value != "same"
    }
    # The read is the stack's reference to its own outputs, made on every run.
    own_outputs = f"organization/kafka-tasks/{life.stack}"
    assert changed == {("update", "autoscaling-scaled-object"), ("read", own_outputs)}
    (update,) = [
        e.resource_pre_event.metadata
        for e in life.change_events
        if e.resource_pre_event is not None and e.resource_pre_event.metadata.op.value == "update"
    ]
    assert set(update.detailed_diff or {}) == {"spec.pollingInterval"}
    assert steps(life.change_up.summary.resource_changes or {}).get("update") == 1
    (scaled,) = [o for o in life.rendered_after_change if o["kind"] == "ScaledObject"]
    assert scaled["spec"]["pollingInterval"] == CHANGED_POLLING_SECONDS


def test_fewer_partitions_are_refused_before_any_topic_changes(life: StackLife) -> None:
    message = life.refusals["partitions"]
    assert "is below the" in message
    assert "Kafka cannot remove partitions" in message
    config = parse_config({**committed_config(life.stack), **OVERRIDES})
    for topic in life.topics_after_refusals:
        assert topic["outputs"]["spec"]["partitions"] in (
            config.topic_partitions,
            config.dead_letter_partitions,
        )
        assert topic["outputs"]["spec"]["replicas"] == config.topic_replicas


def test_a_replica_change_is_refused_where_there_are_brokers_for_it(life: StackLife) -> None:
    """dev has one broker, so its config rules already refuse topicReplicas 2 (test_config)."""
    several_brokers = parse_config(committed_config(life.stack)).kafka_broker_replicas > 1
    assert ("replicas" in life.refusals) == several_brokers
    if several_brokers:
        message = life.refusals["replicas"]
        assert "cannot change the replication factor of an existing topic" in message


def test_destroy_removes_everything(life: StackLife) -> None:
    assert life.state_after_destroy == []
    assert life.rendered_after_destroy == []


@pytest.fixture(scope="module")
def fresh_dev(tmp_path_factory: pytest.TempPathFactory) -> EngineStack:
    """A dev stack nothing was deployed to, for what the engine refuses before any step."""
    return EngineStack(
        "dev",
        tmp_path_factory.mktemp("engine-fresh-dev"),
        overrides=OVERRIDES,
        secret_values=PREVIEW_SECRETS,
    )


def test_the_engine_enforces_the_types_pulumi_yaml_declares(fresh_dev: EngineStack) -> None:
    fresh_dev.set(topicPartitions="many")
    with pytest.raises(auto.CommandError, match=r"topicPartitions.*integer"):
        fresh_dev.preview()
    fresh_dev.set(topicPartitions=3)
    assert set(steps(fresh_dev.preview().change_summary)) == {"create"}


def test_the_engine_refuses_a_declared_secret_given_in_plain_text(fresh_dev: EngineStack) -> None:
    fresh_dev.stack.set_config("kafka-tasks:apiKeys", auto.ConfigValue('["plain"]', secret=False))
    with pytest.raises(auto.CommandError, match=r"apiKeys.*secret"):
        fresh_dev.preview()
