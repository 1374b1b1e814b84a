"""The Strimzi cluster operator, installed from its OCI Helm chart."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig

STRIMZI_CHART = "oci://quay.io/strimzi-helm/strimzi-kafka-operator"
"""The chart's OCI home; the old https chart repository is deprecated."""


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
            chart=STRIMZI_CHART,
            version=config.strimzi_chart_version,
            namespace=namespace.metadata["name"],
            values={
                # Only the Kafka namespace: the operator needs no cluster-wide watch here.
                "watchNamespaces": [],
                "watchAnyNamespace": False,
                "resources": {
                    "requests": {"cpu": "200m", "memory": "384Mi"},
                    "limits": {"cpu": "1", "memory": "384Mi"},
                },
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"chartVersion": config.strimzi_chart_version})
