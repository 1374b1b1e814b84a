"""The composition root: declares every component in dependency order and exports outputs.

Ordering, all explicit: Strimzi chart -> Kafka (Ready) -> KafkaTopics (Ready) -> application;
Kafka (Ready) -> KafkaUsers (Ready) -> KafkaAccess Secrets (Ready) -> application and KEDA's
TriggerAuthentication; Redis (StatefulSet ready) -> application; KEDA chart + worker
Deployment -> ScaledObject (Ready).
"""

from __future__ import annotations

import pulumi

from infra import config as stack_config
from infra import topic_layout
from infra.components.app import Application, kafka_client_peers
from infra.components.ingress import ApiIngress
from infra.components.kafka import KafkaCluster, KafkaTopics
from infra.components.kafka_users import KafkaAccessSecrets, KafkaUsers
from infra.components.keda import KEDA_OPERATOR, Keda, WorkerAutoscaling
from infra.components.namespaces import Namespaces
from infra.components.redis import Redis
from infra.components.strimzi import StrimziOperator
from services.core import contract
from services.core.access import Component


def define_stack() -> None:
    config, secrets = stack_config.load()

    # The topics' deployed layout, read back from this stack's own outputs: a change Kafka
    # cannot make stops the run before any topic is sent instead of leaving KafkaTopics
    # Ready=False. Every component waits for that read (children wait for their component),
    # so no step writes the stack's state while it is being read: the local file backend
    # (gocloud's fileblob) rewrites the checkpoint's ".attrs" file in place, and a read racing
    # that write meets it empty and fails with "failed to load checkpoint: EOF".
    own_stack = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    )
    layout = own_stack.get_output(topic_layout.OUTPUT).apply(
        lambda outputs: topic_layout.checked_change(
            topic_layout.deployed_layout(outputs), topic_layout.TopicLayout.of(config)
        )
    )

    def after_the_read(*depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(depends_on=[own_stack, *depends_on])

    namespaces = Namespaces("namespaces", config, opts=after_the_read())
    strimzi = StrimziOperator("strimzi", config, namespaces.kafka, opts=after_the_read())
    kafka = KafkaCluster(
        "kafka",
        config,
        namespaces.kafka,
        operator=strimzi.chart,
        client_peers=kafka_client_peers(config, KEDA_OPERATOR),
        opts=after_the_read(),
    )
    topics = KafkaTopics("topics", config, kafka, layout, opts=after_the_read())
    users = KafkaUsers("kafka-users", config, kafka, opts=after_the_read())
    kafka_access = KafkaAccessSecrets(
        "kafka-access", config, kafka, users, namespaces.app, opts=after_the_read()
    )
    redis = Redis(
        "redis",
        config,
        secrets,
        namespaces.app,
        client_names=[contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME],
        opts=after_the_read(),
    )
    keda = Keda("keda", config, namespaces.keda, opts=after_the_read())
    ingress = ApiIngress(
        "ingress", config, namespaces.ingress, namespaces.app, opts=after_the_read()
    )
    app = Application(
        "app",
        config,
        secrets,
        namespaces.app,
        redis_urls=redis.urls,
        # Depending on a component waits for all its children: every topic Ready, Redis up,
        # every component's Kafka credentials written.
        opts=after_the_read(topics, redis, kafka_access),
    )
    WorkerAutoscaling(
        "autoscaling",
        config,
        keda,
        app.worker,
        # KEDA's own credentials only: its TriggerAuthentication reads that Secret.
        opts=after_the_read(kafka_access.accesses[Component.KEDA]),
    )

    pulumi.export("apiUrl", ingress.url)
    pulumi.export("kafkaBootstrap", kafka.bootstrap)
    pulumi.export("topicNames", topics.topic_names)
    pulumi.export("consumerGroup", config.consumer_group)
    pulumi.export(topic_layout.OUTPUT, layout.apply(lambda checked: checked.as_output()))
