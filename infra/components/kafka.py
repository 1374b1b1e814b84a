"""Kafka in KRaft mode (Strimzi ``kafka.strimzi.io/v1``) and one KafkaTopic per task topic."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import KAFKA_PLAIN_PORT, StackConfig
from infra.k8s import wait_until_ready

STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
"""Strimzi 1.x serves only v1 (v1beta2 was removed in 1.0)."""
CLUSTER_LABEL = "strimzi.io/cluster"


def _storage(config: StackConfig) -> dict[str, Any]:
    volume: dict[str, Any] = {
        "id": 0,
        "type": "persistent-claim",
        "size": config.kafka_storage_size,
        # Keep the data when the Kafka resource is deleted by mistake; tear-down is explicit.
        "deleteClaim": False,
        # KRaft metadata lives on the same volume as the data: one volume per node.
        "kraftMetadata": "shared",
    }
    if config.kafka_storage_class:
        volume["class"] = config.kafka_storage_class
    return {"type": "jbod", "volumes": [volume]}


def _node_resources(config: StackConfig) -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": config.kafka_cpu_request, "memory": config.kafka_memory_request},
        "limits": {"cpu": config.kafka_cpu_limit, "memory": config.kafka_memory_limit},
    }


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

        if config.kafka_node_layout == "combined":
            pools = {"dual-role": (config.kafka_broker_replicas, ["controller", "broker"])}
        else:
            pools = {
                "controller": (config.kafka_controller_replicas, ["controller"]),
                "broker": (config.kafka_broker_replicas, ["broker"]),
            }
        self.node_pools = [
            k8s.apiextensions.CustomResource(
                f"{name}-pool-{pool}",
                api_version=STRIMZI_API_VERSION,
                kind="KafkaNodePool",
                metadata={"name": pool, "namespace": ns, "labels": {CLUSTER_LABEL: cluster}},
                spec={
                    "replicas": replicas,
                    "roles": roles,
                    "storage": _storage(config),
                    "resources": _node_resources(config),
                },
                # The CRDs come with the operator chart.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[operator]),
            )
            for pool, (replicas, roles) in pools.items()
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
                    "listeners": [
                        {
                            "name": "plain",
                            "port": KAFKA_PLAIN_PORT,
                            "type": "internal",
                            "tls": False,
                            # Strimzi turns these peers into the listener's NetworkPolicy:
                            # only the API, the workers and KEDA's lag reader get in.
                            "networkPolicyPeers": client_peers,
                        }
                    ],
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
                "entityOperator": {"topicOperator": {}},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[operator, *self.node_pools]),
        )
        self.bootstrap = pulumi.Output.from_input(config.kafka_bootstrap)
        self.register_outputs({"bootstrap": self.bootstrap, "name": cluster})


class KafkaTopics(pulumi.ComponentResource):
    """One KafkaTopic per task of the catalog plus retry and dead-letter, each awaited Ready."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        cluster: KafkaCluster,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:KafkaTopics", name, None, opts)
        specs = [
            (topic, config.topic_partitions, config.topic_retention_ms)
            for topic in config.consumed_topics
        ]
        specs.append(
            (
                config.dead_letter_topic,
                config.dead_letter_partitions,
                config.dead_letter_retention_ms,
            )
        )
        self.topic_names = [topic for topic, _, _ in specs]
        self.topics = [
            k8s.apiextensions.CustomResource(
                f"{name}-{topic}",
                api_version=STRIMZI_API_VERSION,
                kind="KafkaTopic",
                metadata={
                    # Dots are legal in both names, but dashes keep kubectl output readable;
                    # spec.topicName carries the exact Kafka name.
                    "name": topic.replace(".", "-"),
                    "namespace": cluster.namespace,
                    "labels": {CLUSTER_LABEL: config.kafka_cluster_name},
                    "annotations": wait_until_ready(config.readiness_timeout_seconds),
                },
                spec={
                    "topicName": topic,
                    "partitions": partitions,
                    "replicas": config.topic_replicas,
                    "config": {"retention.ms": retention_ms, "cleanup.policy": "delete"},
                },
                # The topic operator only exists once the Kafka resource is Ready.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.kafka]),
            )
            for topic, partitions, retention_ms in specs
        ]
        self.register_outputs({"topicNames": self.topic_names})
