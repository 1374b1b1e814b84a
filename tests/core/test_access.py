"""The Kafka ACLs of each component cover every topic the services use, and no more."""

from __future__ import annotations

from services.core import access, policy
from services.core.kafka_topics import topic_names
from services.core.settings import Settings
from services.tasks import catalog


def test_the_grants_cover_every_topic_the_services_declare_priority_topics_included() -> None:
    settings = Settings(namespace="acl")
    grants = access.kafka_grants("acl", catalog)
    topics_of = {
        component: {g.name for g in rules if g.resource == "topic"}
        for component, rules in grants.items()
    }
    task_topics = set(policy.all_task_topics(catalog, settings))
    assert any(topic.endswith(".high") for topic in task_topics)  # the demo has priorities
    assert task_topics <= topics_of[access.Component.API]
    assert set(topic_names(settings, catalog)) == topics_of[access.Component.WORKER]
    assert task_topics | {"acl.retry"} == topics_of[access.Component.KEDA]
