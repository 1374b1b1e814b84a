"""KEDA and the worker's ScaledObject: scale on the lag of the workers' own consumer group.

KEDA reads the lag as its own Kafka user (Describe on the group and the topics it scales on,
nothing more), through a TriggerAuthentication that takes the user's SCRAM credentials and
the cluster CA from the Secret the Access Operator writes for it."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.kafka_users import (
    BINDING_CA,
    BINDING_PASSWORD,
    BINDING_USERNAME,
    binding_secret,
)
from infra.config import StackConfig
from infra.k8s import labels, wait_until_ready
from services.core.access import Component
from services.core.contract import WORKER_AUTO_OFFSET_RESET

KEDA_OPERATOR = "keda-operator"
"""app.kubernetes.io/name of the KEDA operator pods, which read the consumer lag."""
KEDA_API_VERSION = "keda.sh/v1alpha1"
TRIGGER_AUTHENTICATION = "kafka-tasks-keda-kafka"
"""The TriggerAuthentication every kafka trigger of the ScaledObject refers to."""


class Keda(pulumi.ComponentResource):
    """The KEDA operator and its CRDs."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:Keda", name, None, opts)
        self.chart = k8s.helm.v4.Chart(
            f"{name}-chart",
            **config.chart_sources()["kedaChart"].chart_args(),
            namespace=namespace.metadata["name"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"chartVersion": config.keda_chart_version})


def kafka_trigger(config: StackConfig, topic: str, lag_threshold: int) -> dict[str, Any]:
    """One KEDA ``kafka`` trigger; KEDA wants every metadata value as a string."""
    return {
        "type": "kafka",
        "metadata": {
            "bootstrapServers": config.kafka_bootstrap,
            # The exact group faust joins, from the same rule the worker uses.
            "consumerGroup": config.consumer_group,
            "topic": topic,
            "lagThreshold": str(lag_threshold),
            "activationLagThreshold": str(config.activation_lag_threshold),
            # KEDA defaults to latest; a group that has not committed yet would then show no
            # lag while the worker (earliest) still has the whole backlog to process.
            "offsetResetPolicy": WORKER_AUTO_OFFSET_RESET,
            "allowIdleConsumers": str(config.allow_idle_consumers).lower(),
            "limitToPartitionsWithLag": str(config.limit_to_partitions_with_lag).lower(),
            # TLS and SCRAM-SHA-512: the user, its password and the CA come from the
            # TriggerAuthentication.
            "tls": "enable",
            "sasl": "scram_sha512",
        },
        "authenticationRef": {"name": TRIGGER_AUTHENTICATION},
    }


def trigger_authentication_spec() -> dict[str, Any]:
    """KEDA's kafka scaler parameters from the KEDA user's Access Operator Secret."""
    secret = binding_secret(Component.KEDA)
    return {
        "secretTargetRef": [
            {"parameter": "username", "name": secret, "key": BINDING_USERNAME},
            {"parameter": "password", "name": secret, "key": BINDING_PASSWORD},
            {"parameter": "ca", "name": secret, "key": BINDING_CA},
        ]
    }


class WorkerAutoscaling(pulumi.ComponentResource):
    """One ScaledObject for the worker Deployment with a kafka trigger per consumed topic (each
    priority topic its own: a backlog of any priority scales the workers)."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        keda: Keda,
        worker: k8s.apps.v1.Deployment,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:app:WorkerAutoscaling", name, None, opts)
        self.authentication = k8s.apiextensions.CustomResource(
            f"{name}-trigger-authentication",
            api_version=KEDA_API_VERSION,
            kind="TriggerAuthentication",
            metadata={
                "name": TRIGGER_AUTHENTICATION,
                "namespace": worker.metadata["namespace"],
                "labels": labels(Component.KEDA.user, "trigger-authentication"),
            },
            spec=trigger_authentication_spec(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[keda.chart]),
        )
        retry_topic = config.consumed_topics[-1]
        triggers = [
            kafka_trigger(
                config,
                topic,
                config.retry_lag_threshold if topic == retry_topic else config.lag_threshold,
            )
            for topic in config.consumed_topics
        ]
        self.scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version=KEDA_API_VERSION,
            kind="ScaledObject",
            metadata={
                "name": worker.metadata["name"],
                "namespace": worker.metadata["namespace"],
                "annotations": wait_until_ready(config.readiness_timeout_seconds),
            },
            spec={
                "scaleTargetRef": {"name": worker.metadata["name"]},
                "minReplicaCount": config.worker_min_replicas,
                "maxReplicaCount": config.worker_max_replicas,
                "pollingInterval": config.polling_interval_seconds,
                "cooldownPeriod": config.cooldown_period_seconds,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleUp": {
                                "stabilizationWindowSeconds": config.scale_up_stabilization_seconds
                            },
                            "scaleDown": {
                                "stabilizationWindowSeconds": (
                                    config.scale_down_stabilization_seconds
                                ),
                                "policies": [
                                    {
                                        "type": "Percent",
                                        "value": config.scale_down_percent_per_minute,
                                        "periodSeconds": 60,
                                    }
                                ],
                            },
                        }
                    }
                },
                "triggers": triggers,
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[keda.chart, worker, self.authentication]
            ),
        )
        self.register_outputs({"consumerGroup": config.consumer_group})
