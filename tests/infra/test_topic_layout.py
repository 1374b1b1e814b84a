"""Topic changes Kafka cannot make, refused against the layout the stack last deployed."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime.invoke import InvokeResult

from infra import topic_layout
from infra.errors import ConfigError, DeployedStateError
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


class FlakyBackend:
    """Fails the first ``failures`` reads as a half-written local checkpoint does."""

    def __init__(self, failures: int, outputs: dict[str, Any]) -> None:
        self.failures, self.outputs, self.reads = failures, outputs, 0

    def invoke(self, token: str, args: dict[str, Any]) -> InvokeResult:
        assert token == "pulumi:pulumi:readStackOutputs"
        assert args == {"name": "organization/kafka-tasks/dev"}
        self.reads += 1
        if self.reads <= self.failures:
            # The SDK raises a bare Exception for a failed invoke.
            raise Exception("invoke of pulumi:pulumi:readStackOutputs failed: EOF")
        return InvokeResult({"outputs": self.outputs, "secretOutputNames": []})


def test_a_read_that_meets_a_half_written_checkpoint_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = FlakyBackend(2, {"topicLayout": DEPLOYED.as_output()})
    pauses: list[float] = []
    monkeypatch.setattr(topic_layout.pulumi.runtime, "invoke", backend.invoke)
    monkeypatch.setattr(topic_layout.time, "sleep", pauses.append)
    outputs = topic_layout.read_deployed_outputs("organization/kafka-tasks/dev")
    assert deployed_layout(outputs["topicLayout"]) == DEPLOYED
    assert (backend.reads, pauses) == (3, [0.1, 0.2])


def test_a_read_that_keeps_failing_says_what_could_not_be_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = FlakyBackend(topic_layout.READ_ATTEMPTS, {})
    monkeypatch.setattr(topic_layout.pulumi.runtime, "invoke", backend.invoke)
    monkeypatch.setattr(topic_layout.time, "sleep", lambda _: None)
    with pytest.raises(DeployedStateError, match="could not read the outputs of stack"):
        topic_layout.read_deployed_outputs("organization/kafka-tasks/dev")
    assert backend.reads == topic_layout.READ_ATTEMPTS
