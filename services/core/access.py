"""Who may do what: each component's Kafka ACLs and Redis ACL rules, in one place.

Infra builds every ``KafkaUser`` and the in-cluster Valkey's ACL file from these lists, and
the local secure stack (``devstack up --secure``) grants the very same ones with Kafka's and
Redis's own tools, so the tests that run the services on it prove exactly what Kubernetes
deploys: enough to run every task flow, and nothing more.

Kafka (Read, Write, Alter imply Describe; Describe is listed anyway, as Strimzi's examples do):

===========  ==========================================================================
component    may
===========  ==========================================================================
api          write the task topics; describe the workers' group and the topics they read
             (the dashboard shows their lag)
worker       read and write the task and retry topics (due retries and abandoned tasks go
             back on their task topic), write the dead-letter topic, read as its own group
redrive      read the dead-letter topic as its own group, write the task topics (it submits
             the tasks again)
keda         describe the workers' group and the topics they read: the lag, nothing else
===========  ==========================================================================

No component may create, delete or reconfigure a topic, alter ACLs, or read another
component's group. Redis: the API (with re-drive, which submits like the API) and the workers
each log in as their own ACL user, limited to the namespace's keys and to data and script
commands (no admin, no ``KEYS``/``FLUSHALL``/``CONFIG``, no pub/sub). The state scripts are
shared, so Redis cannot tell which task state a component may write: see the README's threat
model.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from services.core import topics
from services.core.catalog import Catalog


class Component(enum.StrEnum):
    """A client identity: its Kafka user and (for the services) its Redis user."""

    API = "api"
    WORKER = "worker"
    REDRIVE = "redrive"
    KEDA = "keda"

    @property
    def user(self) -> str:
        """The Kafka user name (the KafkaUser's name), and the Redis user's."""
        return f"kafka-tasks-{self.value}"


REDIS_COMPONENTS: Final = (Component.API, Component.WORKER)
"""Components with a Redis user of their own (re-drive logs in as the API: it submits)."""

ResourceType = Literal["topic", "group"]
Operation = Literal["Read", "Write", "Describe"]


@dataclass(frozen=True)
class KafkaGrant:
    """Operations allowed on one topic or group, named exactly (a literal ACL)."""

    resource: ResourceType
    name: str
    operations: tuple[Operation, ...]

    def strimzi_acl(self) -> dict[str, object]:
        """The rule as a Strimzi ``KafkaUser`` ``spec.authorization.acls`` entry."""
        return {
            "resource": {"type": self.resource, "name": self.name, "patternType": "literal"},
            "operations": list(self.operations),
        }


def kafka_grants(namespace: str, catalog: Catalog) -> dict[Component, list[KafkaGrant]]:
    """Every component's Kafka ACLs for the tasks of ``catalog`` in ``namespace``: each task
    topic, a prioritised task's high, default and low ones included."""
    task_topics = [
        topic
        for spec in catalog.specs()
        for topic in topics.task_topics(namespace, spec.name, prioritized=spec.prioritized)
    ]
    retry = topics.retry_topic(namespace)
    dead_letter = topics.dead_letter_topic(namespace)
    workers = topics.consumer_group(namespace)
    consumed = [*task_topics, retry]

    def on_topics(names: list[str], *operations: Operation) -> list[KafkaGrant]:
        return [KafkaGrant("topic", name, operations) for name in names]

    return {
        Component.API: [
            *on_topics(task_topics, "Write", "Describe"),
            # The dashboard's lag: offsets of the workers' group on what it consumes.
            KafkaGrant("group", workers, ("Describe",)),
            *on_topics([retry], "Describe"),
        ],
        Component.WORKER: [
            *on_topics(consumed, "Read", "Write", "Describe"),
            *on_topics([dead_letter], "Write", "Describe"),
            KafkaGrant("group", workers, ("Read", "Describe")),
        ],
        Component.REDRIVE: [
            *on_topics([dead_letter], "Read", "Describe"),
            KafkaGrant("group", topics.redrive_group(namespace), ("Read", "Describe")),
            *on_topics(task_topics, "Write", "Describe"),
        ],
        Component.KEDA: [
            *on_topics(consumed, "Describe"),
            KafkaGrant("group", workers, ("Describe",)),
        ],
    }


def redis_rules(namespaces: Sequence[str]) -> str:
    """The ACL rules (after ``on`` and the password) of every service's Redis user: the keys
    of ``namespaces`` only; data, script and transaction commands, TIME (the state scripts
    read the server's clock) and RESTORE; nothing else dangerous, nothing administrative; no
    pub/sub channels."""
    keys = " ".join(f"~{topics.redis_key_prefix(namespace)}*" for namespace in namespaces)
    # `~` alone allows the empty key name, and only it: the create and withdraw scripts
    # declare '' for "no Idempotency-Key" (a key they never read or write), and Redis checks
    # every declared key against the user's patterns.
    # RESTORE (a @dangerous command) only on these keys: a terminal write rewrites its task's
    # events stream from its own DUMP to give back the stream's preallocated node
    # (state_scripts.py). A crafted payload is what makes RESTORE dangerous; the servers
    # therefore check every payload in full (``sanitize-dump-payload yes``).
    return (
        f"resetkeys {keys} ~ resetchannels "
        "-@all +@read +@write +@scripting +@transaction +@connection "
        "-@dangerous -@admin +time +restore"
    )
