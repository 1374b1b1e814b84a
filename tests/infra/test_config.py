"""Stack config: one test per validation rule, the Pulumi.yaml declarations, the stack files."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import yaml

from infra.config import SECRET_KEYS, StackConfig, parse_config
from infra.errors import ConfigError
from infra.quantities import parse_quantity
from infra.render import REPO_ROOT, STACKS, RenderedStack, stack_config

VALID_DEV = stack_config("dev")


def config_error(**overrides: Any) -> str:
    """The message ``parse_config`` raises for the dev stack with ``overrides``."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**VALID_DEV, **overrides})
    return str(caught.value)


def test_dev_stack_is_valid_as_committed() -> None:
    assert parse_config(VALID_DEV).kafka_node_layout == "combined"


# --- One test per cross-field rule -----------------------------------------------------------


def test_max_replicas_above_partitions_is_refused_and_names_the_fix() -> None:
    message = config_error(workerMaxReplicas=4, topicPartitions=3)
    assert "workerMaxReplicas=4 exceeds topicPartitions=3" in message
    assert "allowIdleConsumers=true" in message


def test_max_replicas_above_partitions_is_allowed_with_idle_consumers_on_purpose() -> None:
    config = parse_config(
        {**VALID_DEV, "workerMaxReplicas": 4, "topicPartitions": 3, "allowIdleConsumers": True}
    )
    assert config.worker_max_replicas == 4


def test_min_replicas_above_max_is_refused() -> None:
    assert "workerMinReplicas=3 is above workerMaxReplicas=2" in config_error(
        workerMinReplicas=3, workerMaxReplicas=2
    )


def test_idle_consumers_and_partitions_with_lag_are_exclusive() -> None:
    message = config_error(allowIdleConsumers=True, limitToPartitionsWithLag=True)
    assert "allowIdleConsumers and limitToPartitionsWithLag" in message


def test_activation_threshold_must_stay_below_lag_thresholds() -> None:
    message = config_error(activationLagThreshold=30, retryLagThreshold=30)
    assert "activationLagThreshold=30" in message
    assert "lowest lag threshold (30)" in message


def test_cooldown_shorter_than_polling_is_refused() -> None:
    message = config_error(cooldownPeriodSeconds=10, pollingIntervalSeconds=15)
    assert "cooldownPeriodSeconds=10 is shorter than pollingIntervalSeconds=15" in message


def test_replication_factor_above_brokers_is_refused() -> None:
    assert "kafkaReplicationFactor=3 exceeds the 1 broker(s)" in config_error(
        kafkaReplicationFactor=3
    )


def test_topic_replicas_above_brokers_is_refused() -> None:
    assert "topicReplicas=2 exceeds the 1 broker(s)" in config_error(topicReplicas=2)


def test_min_insync_above_replication_is_refused() -> None:
    message = config_error(
        kafkaBrokerReplicas=3, kafkaReplicationFactor=2, topicReplicas=2, kafkaMinInsyncReplicas=3
    )
    assert "kafkaMinInsyncReplicas=3 is above the replication factor (2)" in message


def test_even_controller_quorum_is_refused() -> None:
    message = config_error(
        kafkaNodeLayout="dedicated", kafkaControllerReplicas=2, kafkaBrokerReplicas=1
    )
    assert "kafkaControllerReplicas=2 is even" in message


def test_limit_below_request_is_refused() -> None:
    message = config_error(workerMemoryRequest="1Gi", workerMemoryLimit="512Mi")
    assert "workerMemoryLimit=512Mi is below workerMemoryRequest=1Gi" in message


def test_malformed_quantity_is_refused() -> None:
    assert "apiCpuRequest/apiCpuLimit: 'lots' is not a Kubernetes quantity" in config_error(
        apiCpuRequest="lots"
    )


def test_tiny_volume_is_refused() -> None:
    assert "redisStorageSize=10Mi is below 512Mi" in config_error(redisStorageSize="10Mi")


def test_dead_letters_must_outlive_tasks() -> None:
    message = config_error(topicRetentionMs=604_800_000, deadLetterRetentionMs=86_400_000)
    assert "deadLetterRetentionMs=86400000 is shorter than topicRetentionMs" in message


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/acme/api:latest", "uses the 'latest' tag"),
        ("ghcr.io/acme/api", "has no tag or digest"),
        ("Not An Image", "is not an image reference"),
    ],
)
def test_images_must_be_pinned(image: str, expected: str) -> None:
    assert expected in config_error(apiImage=image)


def test_image_pinned_by_digest_is_accepted() -> None:
    digest = "ghcr.io/acme/api@sha256:" + "a" * 64
    assert parse_config({**VALID_DEV, "apiImage": digest}).api_image == digest


def test_api_host_must_be_a_host_name() -> None:
    assert "apiHost='https://x' is not a DNS host name" in config_error(apiHost="https://x")


def test_field_constraint_names_the_key() -> None:
    assert config_error(topicPartitions=0).startswith(
        "kafka-tasks stack config is invalid: topicPartitions:"
    )


def test_unknown_key_is_refused() -> None:
    assert "workerMaxReplica" in config_error(workerMaxReplica=3)


# --- Secrets -----------------------------------------------------------------------------------


def test_missing_api_keys_stop_the_program(render_dev_with: Callable[..., RenderedStack]) -> None:
    with pytest.raises(ConfigError, match="pulumi config set --secret apiKeys"):
        render_dev_with(secrets={"redisPassword": "pw"})


def test_internal_redis_needs_a_password(render_dev_with: Callable[..., RenderedStack]) -> None:
    with pytest.raises(ConfigError, match="redisPassword is not set"):
        render_dev_with(secrets={"apiKeys": '["k"]'})


def test_external_redis_needs_a_url(render_dev_with: Callable[..., RenderedStack]) -> None:
    with pytest.raises(ConfigError, match="redisUrl is not set"):
        render_dev_with(secrets={"apiKeys": '["k"]'}, redisMode="external")


# --- Pulumi.yaml and the stack files -----------------------------------------------------------


def _declared() -> dict[str, dict[str, Any]]:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    declared: dict[str, dict[str, Any]] = project["config"]
    return declared


def test_pulumi_yaml_declares_every_setting_with_the_model_default_and_description() -> None:
    declared = _declared()
    for name, field in StackConfig.model_fields.items():
        key = field.alias or name
        assert key in declared, f"{key} missing from Pulumi.yaml config"
        assert declared[key]["default"] == field.default, key
        assert declared[key]["description"] == " ".join((field.description or "").split()), key
        expected_type = {bool: "boolean", int: "integer"}.get(type(field.default), "string")
        assert declared[key]["type"] == expected_type, key


def test_pulumi_yaml_declares_nothing_the_program_does_not_read() -> None:
    known = {field.alias for field in StackConfig.model_fields.values()} | set(SECRET_KEYS)
    assert set(_declared()) <= known


def test_pulumi_yaml_runs_the_infra_program_with_uv() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "kafka-tasks"
    assert project["main"] == "infra/"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "uv"}}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_use_only_declared_keys_of_this_project(stack: str) -> None:
    content = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    keys = set(content["config"])
    assert all(key.startswith("kafka-tasks:") for key in keys)
    assert {key.removeprefix("kafka-tasks:") for key in keys} <= set(_declared())


def test_prod_has_the_production_shape() -> None:
    prod = parse_config(stack_config("prod"))
    assert (prod.kafka_node_layout, prod.kafka_controller_replicas) == ("dedicated", 3)
    assert (prod.kafka_broker_replicas, prod.kafka_replication_factor) == (3, 3)
    assert prod.kafka_min_insync_replicas == 2
    dev = parse_config(stack_config("dev"))
    assert prod.topic_partitions > dev.topic_partitions
    assert prod.kafka_storage_size != dev.kafka_storage_size


@pytest.mark.parametrize("api_keys", ["a-plain-key", "[]", '[""]', '{"key": 1}'])
def test_api_keys_must_be_a_json_list_of_keys(
    render_dev_with: Callable[..., RenderedStack], api_keys: str
) -> None:
    with pytest.raises(ConfigError, match="apiKeys must be a JSON list of non-empty keys"):
        render_dev_with(secrets={"apiKeys": api_keys, "redisPassword": "pw"})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("512Mi", str(512 * 2**20)),
        ("1G", str(10**9)),
        ("1.5Gi", str(3 * 2**29)),
    ],
)
def test_quantities_are_read_like_kubernetes_reads_them(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


def test_a_stack_that_could_scale_its_workers_to_zero_is_refused() -> None:
    # Delayed tasks and schedules need a worker's clock even when no topic has lag.
    assert "workerMinReplicas=0 would leave no worker running" in config_error(workerMinReplicas=0)


def test_task_topics_that_would_share_a_kafkatopic_name_are_refused() -> None:
    from types import SimpleNamespace

    from infra.config import _rule_topic_names_distinct

    colliding = SimpleNamespace(
        consumed_topics=["kt.tasks.noop", "kt.tasks.noop.high", "kt.tasks.noop-high"],
        dead_letter_topic="kt.dead-letter",
    )
    problem = _rule_topic_names_distinct(colliding)  # type: ignore[arg-type]
    assert problem is not None
    assert "'kt.tasks.noop.high' and 'kt.tasks.noop-high' would both be the KafkaTopic" in problem
    fine = SimpleNamespace(consumed_topics=["kt.tasks.noop"], dead_letter_topic="kt.dead-letter")
    assert _rule_topic_names_distinct(fine) is None  # type: ignore[arg-type]


def test_a_cluster_endpoint_needs_a_url(render_dev_with: Callable[..., RenderedStack]) -> None:
    with pytest.raises(ConfigError, match=r"redisUrl is not set \(redisMode cluster-external\)"):
        render_dev_with(secrets={"apiKeys": '["k"]'}, redisMode="cluster-external")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("rediss://:pw@cfg.example.com:6379/2", "has only database 0"),
        ("http://cfg.example.com:6379", "redis:// or rediss://"),
        ("rediss://", "with a host"),
    ],
)
def test_a_cluster_endpoint_url_a_cluster_client_cannot_use_is_refused(
    render_dev_with: Callable[..., RenderedStack], url: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        render_dev_with(secrets={"apiKeys": '["k"]', "redisUrl": url}, redisMode="cluster-external")
