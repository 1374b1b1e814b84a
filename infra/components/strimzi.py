"""The Strimzi cluster operator, installed from its Helm chart (OCI by default)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import charts
from infra.config import StackConfig


class StrimziOperator(pulumi.ComponentResource):
    """Strimzi's operator and CRDs; it watches only the Kafka namespace it is installed in."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:StrimziOperator", name, None, opts)
        self.chart = k8s.helm.v4.Chart(
            f"{name}-chart",
            **config.chart_sources()["strimziChart"].chart_args(),
            namespace=namespace.metadata["name"],
            values=charts.strimzi_values(config),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"chartVersion": config.strimzi_chart_version})
