"""Who may use Kafka: one KafkaUser per component with exactly its ACLs, and the Strimzi
Access Operator's KafkaAccess objects that put each user's credentials, with the cluster CA,
into a Secret of the app namespace.

Strimzi's User Operator creates a KafkaUser's Secret (its SCRAM password) in the Kafka
namespace, and the cluster CA's in ``<cluster>-cluster-ca-cert`` there too; pods and KEDA's
TriggerAuthentication read Secrets of their own namespace only. The Access Operator is
Strimzi's answer for clients in other namespaces: per KafkaAccess it writes one Secret with
``bootstrapServers``, ``username``, ``password`` and ``ssl.truststore.crt`` (the cluster CA)
and keeps it current when Strimzi renews the CA or a password changes.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.components.kafka import CLUSTER_LABEL, STRIMZI_API_VERSION, KafkaCluster
from infra.config import KAFKA_TLS_LISTENER, StackConfig
from infra.k8s import labels, wait_until_ready
from services.core import access
from services.core.access import Component
from services.tasks import catalog

ACCESS_API_VERSION = "access.strimzi.io/v1alpha1"
"""The Access Operator's only API version (0.3.0)."""
BINDING_USERNAME = "username"
BINDING_PASSWORD = "password"
BINDING_CA = "ssl.truststore.crt"
"""Keys of the Secret a KafkaAccess produces (the Service Binding spec's kafka type)."""


def binding_secret(component: Component) -> str:
    """The Secret the Access Operator writes for ``component`` in the app namespace."""
    return f"{component.user}-kafka"


class KafkaUsers(pulumi.ComponentResource):
    """One SCRAM-SHA-512 KafkaUser per component, each with only the ACLs
    ``services.core.access`` lists, awaited until the User Operator reports it Ready."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        cluster: KafkaCluster,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:KafkaUsers", name, None, opts)
        grants = access.kafka_grants(config.task_namespace, catalog)
        self.users = {
            component: k8s.apiextensions.CustomResource(
                f"{name}-{component.value}",
                api_version=STRIMZI_API_VERSION,
                kind="KafkaUser",
                metadata={
                    "name": component.user,
                    "namespace": cluster.namespace,
                    "labels": {
                        CLUSTER_LABEL: config.kafka_cluster_name,
                        **labels(component.user, "kafka-user"),
                    },
                    "annotations": wait_until_ready(config.readiness_timeout_seconds),
                },
                spec={
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {
                        "type": "simple",
                        "acls": [grant.strimzi_acl() for grant in grants[component]],
                    },
                },
                # The User Operator runs once the Kafka resource is Ready.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.kafka]),
            )
            for component in Component
        }
        self.register_outputs({"users": [component.user for component in Component]})


class KafkaAccessSecrets(pulumi.ComponentResource):
    """The Access Operator, and a KafkaAccess per component in the app namespace, each
    awaited Ready (its Secret written)."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        cluster: KafkaCluster,
        users: KafkaUsers,
        app_namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:KafkaAccessSecrets", name, None, opts)
        self.chart = k8s.helm.v4.Chart(
            f"{name}-operator",
            **config.chart_sources()["accessOperatorChart"].chart_args(),
            namespace=cluster.namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.accesses = {
            component: k8s.apiextensions.CustomResource(
                f"{name}-{component.value}",
                api_version=ACCESS_API_VERSION,
                kind="KafkaAccess",
                metadata={
                    "name": component.user,
                    "namespace": app_namespace.metadata["name"],
                    "labels": labels(component.user, "kafka-access"),
                    "annotations": wait_until_ready(config.readiness_timeout_seconds),
                },
                spec={
                    "kafka": {
                        "name": config.kafka_cluster_name,
                        "namespace": config.kafka_namespace,
                        "listener": KAFKA_TLS_LISTENER,
                    },
                    "user": {
                        "kind": "KafkaUser",
                        "apiGroup": "kafka.strimzi.io",
                        "name": component.user,
                        "namespace": config.kafka_namespace,
                    },
                    "secretName": binding_secret(component),
                },
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[self.chart, users.users[component]]
                ),
            )
            for component in Component
        }
        self.register_outputs({"secrets": {c.value: binding_secret(c) for c in Component}})
