"""Topic changes Kafka cannot make, refused against the layout the stack last deployed."""

from __future__ import annotations

import pytest

from infra.errors import ConfigError
from infra.topic_layout import TopicLayout, checked_change, deployed_layout

DEPLOYED = TopicLayout(partitions=12, dead_letter_partitions=3, replicas=3)


def test_a_first_deploy_has_nothing_to_compare_with() -> None:
    assert deployed_layout(None) is None
    assert checked_change(None, TopicLayout(1, 1, 1)) == TopicLayout(1, 1, 1)


def test_the_output_reads_back_as_the_same_layout() -> None:
    assert deployed_layout(DEPLOYED.as_output()) == DEPLOYED


@pytest.mark.parametrize(
    "outputs", [{}, {"topicPartitions": 3}, {"topicPartitions": "x", "deadLetterPartitions": 1}]
)
def test_a_malformed_output_counts_as_none(outputs: dict[str, object]) -> None:
    assert deployed_layout(outputs) is None


def test_the_same_layout_and_more_partitions_pass() -> None:
    assert checked_change(DEPLOYED, DEPLOYED) == DEPLOYED
    more = TopicLayout(24, 6, 3)
    assert checked_change(DEPLOYED, more) == more


@pytest.mark.parametrize("replicas", [2, 4])
def test_any_replica_change_is_refused(replicas: int) -> None:
    with pytest.raises(ConfigError) as refused:
        checked_change(DEPLOYED, TopicLayout(12, 3, replicas))
    message = str(refused.value)
    assert f"topicReplicas={replicas} but the deployed topics have 3 replica(s)" in message
    assert "Set topicReplicas back to 3" in message


def test_fewer_task_partitions_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"topicPartitions=6 is below the 12 partitions"):
        checked_change(DEPLOYED, TopicLayout(6, 3, 3))


def test_fewer_dead_letter_partitions_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"deadLetterPartitions=1 is below the 3 partitions"):
        checked_change(DEPLOYED, TopicLayout(12, 1, 3))
