"""How clients reach the API: Envoy Gateway + HTTPRoute, or the retired ingress-nginx."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig
from infra.k8s import body
from services.core import contract

ENVOY_GATEWAY_CHART = "oci://docker.io/envoyproxy/gateway-helm"
ENVOY_GATEWAY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
INGRESS_NGINX_REPO = "https://kubernetes.github.io/ingress-nginx"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
NGINX_CLASS = "nginx"
GATEWAY_NAME = "kafka-tasks"


class ApiIngress(pulumi.ComponentResource):
    """The ingress controller chart and the route to the API Service."""

    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        ingress_namespace: k8s.core.v1.Namespace,
        app_namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:ApiIngress", name, None, opts)
        self.route: pulumi.Resource
        if config.ingress_mode == "gateway":
            self._gateway(name, config, ingress_namespace, app_namespace)
        else:
            self._ingress_nginx(name, config, ingress_namespace, app_namespace)
        scheme = "https" if config.api_tls_secret_name else "http"
        self.url = pulumi.Output.from_input(f"{scheme}://{config.api_host}")
        self.register_outputs({"url": self.url, "mode": config.ingress_mode})

    def _gateway(
        self,
        name: str,
        config: StackConfig,
        ingress_namespace: k8s.core.v1.Namespace,
        app_namespace: k8s.core.v1.Namespace,
    ) -> None:
        self.chart = k8s.helm.v4.Chart(
            f"{name}-envoy-gateway",
            chart=ENVOY_GATEWAY_CHART,
            version=config.envoy_gateway_chart_version,
            namespace=ingress_namespace.metadata["name"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        after_chart = pulumi.ResourceOptions(parent=self, depends_on=[self.chart])
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version=GATEWAY_API_VERSION,
            kind="GatewayClass",
            metadata={"name": GATEWAY_NAME},
            spec={"controllerName": ENVOY_GATEWAY_CONTROLLER},
            opts=after_chart,
        )
        listeners: list[dict[str, Any]] = [
            {
                "name": "http",
                "protocol": "HTTP",
                "port": 80,
                "hostname": config.api_host,
                "allowedRoutes": {
                    "namespaces": {
                        "from": "Selector",
                        "selector": {
                            "matchLabels": {"kubernetes.io/metadata.name": config.app_namespace}
                        },
                    }
                },
            }
        ]
        if config.api_tls_secret_name:
            listeners.append(
                {
                    **listeners[0],
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [{"kind": "Secret", "name": config.api_tls_secret_name}],
                    },
                }
            )
        self.gateway = k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version=GATEWAY_API_VERSION,
            kind="Gateway",
            metadata={
                "name": GATEWAY_NAME,
                "namespace": ingress_namespace.metadata["name"],
                # A Gateway is usable once its data plane is programmed.
                "annotations": {
                    "pulumi.com/waitFor": "condition=Programmed",
                    "pulumi.com/timeoutSeconds": str(config.readiness_timeout_seconds),
                },
            },
            spec={"gatewayClassName": GATEWAY_NAME, "listeners": listeners},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.chart, gateway_class]),
        )
        self.route = k8s.apiextensions.CustomResource(
            f"{name}-http-route",
            api_version=GATEWAY_API_VERSION,
            kind="HTTPRoute",
            metadata={
                "name": contract.API_SERVICE_NAME,
                "namespace": app_namespace.metadata["name"],
            },
            spec={
                "parentRefs": [
                    {"name": GATEWAY_NAME, "namespace": config.ingress_namespace},
                ],
                "hostnames": [config.api_host],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [
                            {"name": contract.API_SERVICE_NAME, "port": contract.API_PORT}
                        ],
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gateway]),
        )

    def _ingress_nginx(
        self,
        name: str,
        config: StackConfig,
        ingress_namespace: k8s.core.v1.Namespace,
        app_namespace: k8s.core.v1.Namespace,
    ) -> None:
        self.chart = k8s.helm.v4.Chart(
            f"{name}-ingress-nginx",
            chart="ingress-nginx",
            version=config.ingress_nginx_chart_version,
            repository_opts={"repo": INGRESS_NGINX_REPO},
            namespace=ingress_namespace.metadata["name"],
            values={"controller": {"ingressClassResource": {"name": NGINX_CLASS}}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        spec: dict[str, Any] = {
            "ingressClassName": NGINX_CLASS,
            "rules": [
                {
                    "host": config.api_host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {
                                        "name": contract.API_SERVICE_NAME,
                                        "port": {"number": contract.API_PORT},
                                    }
                                },
                            }
                        ]
                    },
                }
            ],
        }
        if config.api_tls_secret_name:
            spec["tls"] = [{"hosts": [config.api_host], "secretName": config.api_tls_secret_name}]
        self.route = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={
                "name": contract.API_SERVICE_NAME,
                "namespace": app_namespace.metadata["name"],
            },
            spec=body(spec),
            # The admission webhook of the controller must exist before an Ingress is accepted.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.chart]),
        )
