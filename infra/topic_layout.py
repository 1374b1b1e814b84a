"""Topic changes Kafka cannot make: refused before ``pulumi up`` sends them.

Strimzi's topic operator refuses to lower a topic's partition count (Kafka cannot remove
partitions) and to change its replication factor without Cruise Control. Sent anyway, the
KafkaTopic turns Ready=False and ``pulumi up`` waits the whole readiness timeout for nothing.
The program exports the layout it deployed (``topicLayout``) and reads it back from its own
stack on the next run, before it declares anything, so such a change stops with a message
that says what to do instead.

The read is the engine's ``pulumi:pulumi:readStackOutputs`` (what a StackReference does), made
as a plain invoke so that it can be retried: a local file backend rewrites the checkpoint
while the update runs, and a read that meets it half-written fails with "failed to load
checkpoint: EOF" (seen in this project's engine tests). The backend gives no signal to wait
for, so the read is retried a few times with a short, growing pause.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.config import PROJECT, StackConfig
from infra.errors import ConfigError, DeployedStateError

OUTPUT = "topicLayout"
"""The stack output that records the deployed layout."""
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
"""The engine's built-in function behind StackReference."""
READ_ATTEMPTS = 6
FIRST_PAUSE_SECONDS = 0.1
"""Doubled after each failed read: at most ~3 s in all."""


def own_stack_name() -> str:
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def read_deployed_outputs(stack_name: str) -> Mapping[str, Any]:
    """The outputs of ``stack_name``'s last update ({} before the first)."""
    pause = FIRST_PAUSE_SECONDS
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": stack_name})
        except Exception as error:  # the SDK raises a bare Exception for a failed invoke
            if attempt == READ_ATTEMPTS:
                raise DeployedStateError(
                    f"could not read the outputs of stack {stack_name} to check the topics' "
                    f"partitions and replicas against what is deployed: {error}"
                ) from error
            time.sleep(pause)
            pause *= 2
            continue
        value = result.value if isinstance(result.value, Mapping) else {}
        outputs = value.get("outputs")
        return outputs if isinstance(outputs, Mapping) else {}
    raise AssertionError("unreachable: the last attempt returns or raises")


def checked_layout(config: StackConfig) -> TopicLayout:
    """The config's layout once checked against the one this stack last deployed."""
    deployed = read_deployed_outputs(own_stack_name()).get(OUTPUT)
    return checked_change(deployed_layout(deployed), TopicLayout.of(config))


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
