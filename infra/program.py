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

    namespaces = Namespaces("namespaces", config)
    strimzi = StrimziOperator("strimzi", config, namespaces.kafka)
    kafka = KafkaCluster(
        "kafka",
        config,
        namespaces.kafka,
        operator=strimzi.chart,
        client_peers=kafka_client_peers(config, KEDA_OPERATOR),
    )
    # The topics' deployed layout, read back from this stack's own outputs: a change Kafka
    # cannot make stops the run here instead of leaving KafkaTopics Ready=False.
    deployed = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    ).get_output(topic_layout.OUTPUT)
    layout = deployed.apply(
        lambda outputs: topic_layout.checked_change(
            topic_layout.deployed_layout(outputs), topic_layout.TopicLayout.of(config)
        )
    )
    topics = KafkaTopics("topics", config, kafka, layout)
    users = KafkaUsers("kafka-users", config, kafka)
    kafka_access = KafkaAccessSecrets("kafka-access", config, kafka, users, namespaces.app)
    redis = Redis(
        "redis",
        config,
        secrets,
        namespaces.app,
        client_names=[contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME],
    )
    keda = Keda("keda", config, namespaces.keda)
    ingress = ApiIngress("ingress", config, namespaces.ingress, namespaces.app)
    app = Application(
        "app",
        config,
        secrets,
        namespaces.app,
        redis_urls=redis.urls,
        # Depending on a component waits for all its children: every topic Ready, Redis up,
        # every component's Kafka credentials written.
        opts=pulumi.ResourceOptions(depends_on=[topics, redis, kafka_access]),
    )
    WorkerAutoscaling(
        "autoscaling",
        config,
        keda,
        app.worker,
        # KEDA's own credentials only: its TriggerAuthentication reads that Secret.
        opts=pulumi.ResourceOptions(depends_on=[kafka_access.accesses[Component.KEDA]]),
    )

    pulumi.export("apiUrl", ingress.url)
    pulumi.export("kafkaBootstrap", kafka.bootstrap)
    pulumi.export("topicNames", topics.topic_names)
    pulumi.export("consumerGroup", config.consumer_group)
    pulumi.export(topic_layout.OUTPUT, layout.apply(lambda checked: checked.as_output()))
