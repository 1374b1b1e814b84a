"""The namespaces every other component places its objects in."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig
from infra.k8s import PART_OF


class Namespaces(pulumi.ComponentResource):
    """Kafka, app, KEDA and ingress namespaces, with the Pod Security level each can meet."""

    def __init__(
        self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("kafka-tasks:platform:Namespaces", name, None, opts)

        def namespace(key: str, ns_name: str, enforce: str) -> k8s.core.v1.Namespace:
            return k8s.core.v1.Namespace(
                f"{name}-{key}",
                metadata={
                    "name": ns_name,
                    "labels": {
                        "app.kubernetes.io/part-of": PART_OF,
                        "pod-security.kubernetes.io/enforce": enforce,
                    },
                },
                opts=pulumi.ResourceOptions(parent=self),
            )

        # The app namespace runs only our hardened pods, so it can enforce "restricted"; the
        # third-party charts are not all restricted-clean, so their namespaces use "baseline".
        self.app = namespace("app", config.app_namespace, "restricted")
        self.kafka = namespace("kafka", config.kafka_namespace, "baseline")
        self.keda = namespace("keda", config.keda_namespace, "baseline")
        self.ingress = namespace("ingress", config.ingress_namespace, "baseline")
        self.register_outputs(
            {
                "app": self.app.metadata["name"],
                "kafka": self.kafka.metadata["name"],
                "keda": self.keda.metadata["name"],
                "ingress": self.ingress.metadata["name"],
            }
        )
