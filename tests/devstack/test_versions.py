"""The local stack runs the Kafka that production runs."""

from __future__ import annotations

from devstack import kafka
from infra.config import StackConfig


def test_local_kafka_is_the_version_the_stacks_deploy() -> None:
    assert kafka.kafka_version() == StackConfig.model_fields["kafka_version"].default == "4.3.1"
