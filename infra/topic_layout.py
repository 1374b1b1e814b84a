"""Topic changes Kafka cannot make: refused before ``pulumi up`` sends them.

Strimzi's topic operator refuses to lower a topic's partition count (Kafka cannot remove
partitions) and to change its replication factor without Cruise Control. Sent anyway, the
KafkaTopic turns Ready=False and ``pulumi up`` waits the whole readiness timeout for nothing.
The program exports the layout it deployed (``topicLayout``) and reads it back from its own
stack on the next run, so such a change stops with a message that says what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.config import PROJECT, StackConfig
from infra.errors import ConfigError

OUTPUT = "topicLayout"
"""The stack output that records the deployed layout."""


@dataclass(frozen=True)
class TopicLayout:
    """Partitions and replication of the topics this program declares."""

    partitions: int
    """Of every task topic and of the retry topic."""
    dead_letter_partitions: int
    replicas: int

    @classmethod
    def of(cls, config: StackConfig) -> TopicLayout:
        return cls(config.topic_partitions, config.dead_letter_partitions, config.topic_replicas)

    def as_output(self) -> dict[str, int]:
        """The stack output: config key names, so `pulumi stack output` reads like config."""
        return {
            "topicPartitions": self.partitions,
            "deadLetterPartitions": self.dead_letter_partitions,
            "topicReplicas": self.replicas,
        }


def deployed_layout(outputs: Mapping[str, Any] | None) -> TopicLayout | None:
    """The layout a previous run exported, or None before the first deploy (or when the
    output is missing or malformed, in which case there is nothing to compare with)."""
    if not isinstance(outputs, Mapping):
        return None
    try:
        return TopicLayout(
            int(outputs["topicPartitions"]),
            int(outputs["deadLetterPartitions"]),
            int(outputs["topicReplicas"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def checked_change(previous: TopicLayout | None, wanted: TopicLayout) -> TopicLayout:
    """``wanted`` when the deployed topics can take it; otherwise a ``ConfigError`` naming the
    key, both values, why Kafka refuses, and the way out."""
    if previous is None:
        return wanted
    if wanted.replicas != previous.replicas:
        raise ConfigError(
            f"{PROJECT} stack config is invalid: topicReplicas={wanted.replicas} but the "
            f"deployed topics have {previous.replicas} replica(s). Strimzi's topic operator "
            "cannot change the replication factor of an existing topic without Cruise Control, "
            "so every KafkaTopic would stay Ready=False and `pulumi up` would wait out "
            "readinessTimeoutSeconds. Set topicReplicas back to "
            f"{previous.replicas}; to change it, reassign the partitions first "
            "(kafka-reassign-partitions.sh, or a KafkaRebalance with Cruise Control)."
        )
    for key, before, after in (
        ("topicPartitions", previous.partitions, wanted.partitions),
        ("deadLetterPartitions", previous.dead_letter_partitions, wanted.dead_letter_partitions),
    ):
        if after < before:
            raise ConfigError(
                f"{PROJECT} stack config is invalid: {key}={after} is below the {before} "
                "partitions the topics already have. Kafka cannot remove partitions, so the "
                "KafkaTopics would stay Ready=False and `pulumi up` would wait out "
                f"readinessTimeoutSeconds. Keep {key} at {before} or more (raising it is fine)."
            )
    return wanted
