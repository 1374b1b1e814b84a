"""Kafka in KRaft mode (Strimzi ``kafka.strimzi.io/v1``) and one KafkaTopic per task topic.

Clients reach Kafka through one listener only: TLS with SCRAM-SHA-512 users, and
``authorization: simple`` refuses whatever a user's ACLs do not allow (kafka_users.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import KAFKA_TLS_LISTENER, KAFKA_TLS_PORT, StackConfig, kafka_topic_resource_name
from infra.k8s import resources, wait_until_ready
from infra.topic_layout import TopicLayout

STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
"""Strimzi 1.x serves only v1 (v1beta2 was removed in 1.0)."""
CLUSTER_LABEL = "strimzi.io/cluster"
POOL_LABEL = "strimzi.io/pool-name"
"""Strimzi labels every pod of a node pool with its pool's name."""


def _storage(config: StackConfig, size: str) -> dict[str, Any]:
    volume: dict[str, Any] = {
        "id": 0,
        "type": "persistent-claim",
        "size": size,
        # Keep the data when the Kafka resource is deleted by mistake; tear-down is explicit.
        "deleteClaim": False,
        # KRaft metadata lives on the same volume as the data: one volume per node.
        "kraftMetadata": "shared",
    }
    if config.kafka_storage_class:
        volume["class"] = config.kafka_storage_class
    return {"type": "jbod", "volumes": [volume]}


@dataclass(frozen=True)
class NodePool:
    """One KafkaNodePool: its roles and its own sizing."""

    name: str
    replicas: int
    roles: list[str]
    storage_size: str
    resources: dict[str, dict[str, str]]


def node_pools(config: StackConfig) -> list[NodePool]:
    """Combined: one pool with both roles sized like brokers. Dedicated: controllers, which
    hold only the metadata log, get their own (small) sizing; brokers get the Kafka sizing."""
    broker_resources = resources(
        config.kafka_cpu_request,
        config.kafka_cpu_limit,
        config.kafka_memory_request,
        config.kafka_memory_limit,
    )
    if config.kafka_node_layout == "combined":
        return [
            NodePool(
                "dual-role",
                config.kafka_broker_replicas,
                ["controller", "broker"],
                config.kafka_storage_size,
                broker_resources,
            )
        ]
    return [
        NodePool(
            "controller",
            config.kafka_controller_replicas,
            ["controller"],
            config.kafka_controller_storage_size,
            resources(
                config.kafka_controller_cpu_request,
                config.kafka_controller_cpu_limit,
                config.kafka_controller_memory_request,
                config.kafka_controller_memory_limit,
            ),
        ),
        NodePool(
            "broker",
            config.kafka_broker_replicas,
            ["broker"],
            config.kafka_storage_size,
            broker_resources,
        ),
    ]


def pool_spread(config: StackConfig, cluster: str, pool: str) -> list[dict[str, Any]]:
    """Spread one pool's pods over nodes (as configured: by default never two on one node,
    which is what "one broker can be down" assumes) and, where possible, over zones."""
    pool_pods = {"matchLabels": {CLUSTER_LABEL: cluster, POOL_LABEL: pool}}
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": config.kafka_node_spread,
            "labelSelector": pool_pods,
        },
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": pool_pods,
        },
    ]


class KafkaCluster(pulumi.ComponentResource):
    """Node pools and the ``Kafka`` resource, awaited until Strimzi reports it Ready."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        namespace: k8s.core.v1.Namespace,
        operator: pulumi.Resource,
        client_peers: list[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:KafkaCluster", name, None, opts)
        ns = namespace.metadata["name"]
        self.namespace = ns
        cluster = config.kafka_cluster_name

        self.node_pools = [
            k8s.apiextensions.CustomResource(
                f"{name}-pool-{pool.name}",
                api_version=STRIMZI_API_VERSION,
                kind="KafkaNodePool",
                metadata={
                    "name": pool.name,
                    "namespace": ns,
                    "labels": {CLUSTER_LABEL: cluster},
                },
                spec={
                    "replicas": pool.replicas,
                    "roles": pool.roles,
                    "storage": _storage(config, pool.storage_size),
                    "resources": pool.resources,
                    "template": {
                        "pod": {
                            "topologySpreadConstraints": pool_spread(config, cluster, pool.name)
                        }
                    },
                },
                # The CRDs come with the operator chart.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[operator]),
            )
            for pool in node_pools(config)
        ]

        rf, isr = config.kafka_replication_factor, config.kafka_min_insync_replicas
        self.kafka = k8s.apiextensions.CustomResource(
            f"{name}-kafka",
            api_version=STRIMZI_API_VERSION,
            kind="Kafka",
            metadata={
                "name": cluster,
                "namespace": ns,
                "annotations": wait_until_ready(config.readiness_timeout_seconds),
            },
            spec={
                "kafka": {
                    "version": config.kafka_version,
                    "metadataVersion": config.kafka_metadata_version,
                    # One listener: encrypted (certificates from Strimzi's cluster CA) and
                    # authenticated with SCRAM-SHA-512. SCRAM rather than mTLS: KEDA's kafka
                    # scaler, faust and aiokafka all speak it, passwords rotate without
                    # re-issuing certificates, and the Access Operator hands both kinds out
                    # alike. Strimzi's own brokers and operators use mTLS on their internal
                    # listeners (9090/9091), which clients never reach.
                    "listeners": [
                        {
                            "name": KAFKA_TLS_LISTENER,
                            "port": KAFKA_TLS_PORT,
                            "type": "internal",
                            "tls": True,
                            "authentication": {"type": "scram-sha-512"},
                            # Strimzi turns these peers into the listener's NetworkPolicy:
                            # only the API, the workers and KEDA's lag reader get in.
                            "networkPolicyPeers": client_peers,
                        }
                    ],
                    # What no KafkaUser's ACLs allow is refused (Strimzi's own operators are
                    # super users by their certificates).
                    "authorization": {"type": "simple"},
                    "config": {
                        "default.replication.factor": rf,
                        "min.insync.replicas": isr,
                        "offsets.topic.replication.factor": rf,
                        "transaction.state.log.replication.factor": rf,
                        "transaction.state.log.min.isr": isr,
                        # Topics are declared as KafkaTopics; a typo must not create one.
                        "auto.create.topics.enable": False,
                    },
                },
                # The User Operator turns each KafkaUser into a SCRAM user with its ACLs.
                "entityOperator": {"topicOperator": {}, "userOperator": {}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[operator, *self.node_pools]),
        )
        self.bootstrap = pulumi.Output.from_input(config.kafka_bootstrap)
        self.register_outputs({"bootstrap": self.bootstrap, "name": cluster})


class KafkaTopics(pulumi.ComponentResource):
    """One KafkaTopic per task topic of the catalog (three for a prioritised task: high,
    default, low) plus retry and dead-letter, each awaited Ready.

    ``layout`` is the config's TopicLayout once checked against the deployed one
    (infra.topic_layout): a change Kafka would refuse fails the run before a topic is sent."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        cluster: KafkaCluster,
        layout: pulumi.Output[TopicLayout],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:KafkaTopics", name, None, opts)
        partitions = layout.apply(lambda checked: checked.partitions)
        specs: list[tuple[str, pulumi.Output[int], int]] = [
            (topic, partitions, config.topic_retention_ms) for topic in config.consumed_topics
        ]
        specs.append(
            (
                config.dead_letter_topic,
                layout.apply(lambda checked: checked.dead_letter_partitions),
                config.dead_letter_retention_ms,
            )
        )
        replicas = layout.apply(lambda checked: checked.replicas)
        self.topic_names = [topic for topic, _, _ in specs]
        self.topics = [
            k8s.apiextensions.CustomResource(
                f"{name}-{topic}",
                api_version=STRIMZI_API_VERSION,
                kind="KafkaTopic",
                metadata={
                    "name": kafka_topic_resource_name(topic),
                    "namespace": cluster.namespace,
                    "labels": {CLUSTER_LABEL: config.kafka_cluster_name},
                    "annotations": wait_until_ready(config.readiness_timeout_seconds),
                },
                spec={
                    "topicName": topic,
                    "partitions": partitions,
                    "replicas": replicas,
                    "config": {"retention.ms": retention_ms, "cleanup.policy": "delete"},
                },
                # The topic operator only exists once the Kafka resource is Ready.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.kafka]),
            )
            for topic, partitions, retention_ms in specs
        ]
        self.register_outputs({"topicNames": self.topic_names})
