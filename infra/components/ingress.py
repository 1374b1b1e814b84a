"""How clients reach the API: Envoy Gateway + HTTPRoute, or the retired ingress-nginx.

Both charts are installed with ``kubernetes.helm.v4.Chart``, which never runs Helm hooks
(pulumi/pulumi-kubernetes#3284). What their hooks would do is handled here instead, and
``infra/charts.py`` refuses any chart whose rendered templates still contain a hook:

* Envoy Gateway's ``certgen`` pre-install Job creates the control plane's TLS Secrets; without
  them the envoy-gateway pod never starts. The same Job is declared here, before the chart,
  and awaited to completion. The topology injector's webhook (also a hook, failurePolicy
  Ignore, optional) is switched off, so certgen does not look for it.
* ingress-nginx's admission webhook gets its certificate from hook Jobs and fails closed
  without it; the chart's own switch turns the webhook off.

``apiExposure`` chooses the Service type in front of the proxy. The Gateway is awaited
``Programmed``, which Envoy Gateway sets once an address is assigned and the proxy replicas
are available: the LoadBalancer's external address, the ClusterIP, or the nodes' addresses.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import charts
from infra.config import StackConfig
from infra.k8s import body, restricted_container_security
from services.core import contract

ENVOY_GATEWAY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
ENVOY_GATEWAY_API_VERSION = "gateway.envoyproxy.io/v1alpha1"
ENVOY_GATEWAY_UID = 65532
"""The non-root user of the distroless Envoy Gateway image."""
CERTGEN = "envoy-gateway-certgen"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
NGINX_CLASS = charts.NGINX_CLASS
GATEWAY_NAME = "kafka-tasks"
HTTPS_REDIRECT_ROUTE = f"{contract.API_SERVICE_NAME}-https-redirect"


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
        self.register_outputs(
            {"url": self.url, "mode": config.ingress_mode, "exposure": config.api_exposure}
        )

    def _certgen(
        self, name: str, config: StackConfig, namespace: pulumi.Input[str]
    ) -> k8s.batch.v1.Job:
        """Envoy Gateway's certgen hook as plain resources: a ServiceAccount allowed to write
        Secrets in the gateway namespace, and the Job that writes them."""
        child = pulumi.ResourceOptions(parent=self)
        meta = {"name": CERTGEN, "namespace": namespace}
        account = k8s.core.v1.ServiceAccount(
            f"{name}-certgen-account",
            metadata=meta,
            automount_service_account_token=False,
            opts=child,
        )
        role = k8s.rbac.v1.Role(
            f"{name}-certgen-role",
            metadata=meta,
            rules=[
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}
            ],
            opts=child,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-certgen-binding",
            metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CERTGEN},
            subjects=[{"kind": "ServiceAccount", "name": CERTGEN, "namespace": namespace}],
            opts=child,
        )
        return k8s.batch.v1.Job(
            f"{name}-certgen",
            metadata=meta,
            spec=body(
                {
                    "backoffLimit": 3,
                    "template": {
                        "metadata": {"labels": {"app": "certgen"}},
                        "spec": {
                            "serviceAccountName": CERTGEN,
                            # certgen talks to the API server to write the Secrets.
                            "automountServiceAccountToken": True,
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": ENVOY_GATEWAY_UID,
                                "runAsGroup": ENVOY_GATEWAY_UID,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": "certgen",
                                    "image": config.envoy_gateway_image_ref,
                                    "command": ["envoy-gateway", "certgen"],
                                    "args": ["--disable-topology-injector"],
                                    "env": [
                                        {
                                            "name": "ENVOY_GATEWAY_NAMESPACE",
                                            "valueFrom": {
                                                "fieldRef": {"fieldPath": "metadata.namespace"}
                                            },
                                        },
                                        {
                                            "name": "KUBERNETES_CLUSTER_DOMAIN",
                                            "value": "cluster.local",
                                        },
                                    ],
                                    "resources": {
                                        "requests": {"cpu": "50m", "memory": "64Mi"},
                                        "limits": {"cpu": "500m", "memory": "128Mi"},
                                    },
                                    "securityContext": restricted_container_security(),
                                }
                            ],
                        },
                    },
                }
            ),
            # A Job's pod template is immutable: a new image replaces the Job, which runs
            # certgen again, as the chart's pre-upgrade hook would.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, role, binding]),
        )

    def _gateway(
        self,
        name: str,
        config: StackConfig,
        ingress_namespace: k8s.core.v1.Namespace,
        app_namespace: k8s.core.v1.Namespace,
    ) -> None:
        ns = ingress_namespace.metadata["name"]
        self.certgen = self._certgen(name, config, ns)
        self.chart = k8s.helm.v4.Chart(
            f"{name}-envoy-gateway",
            **config.chart_sources()["envoyGatewayChart"].chart_args(),
            namespace=ns,
            values=charts.envoy_gateway_values(config),
            # The control plane mounts the Secrets certgen writes.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.certgen]),
        )
        after_chart = pulumi.ResourceOptions(parent=self, depends_on=[self.chart])
        proxy_config = k8s.apiextensions.CustomResource(
            f"{name}-envoy-proxy",
            api_version=ENVOY_GATEWAY_API_VERSION,
            kind="EnvoyProxy",
            metadata={"name": GATEWAY_NAME, "namespace": ns},
            spec={
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {"envoyService": {"type": config.api_exposure}},
                }
            },
            opts=after_chart,
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version=GATEWAY_API_VERSION,
            kind="GatewayClass",
            metadata={"name": GATEWAY_NAME},
            spec={
                "controllerName": ENVOY_GATEWAY_CONTROLLER,
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": GATEWAY_NAME,
                    "namespace": config.ingress_namespace,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.chart, proxy_config]),
        )
        from_app_namespace = {
            "namespaces": {
                "from": "Selector",
                "selector": {"matchLabels": {"kubernetes.io/metadata.name": config.app_namespace}},
            }
        }
        listeners: list[dict[str, Any]] = [
            {
                "name": "http",
                "protocol": "HTTP",
                "port": 80,
                "hostname": config.api_host,
                "allowedRoutes": from_app_namespace,
            }
        ]
        if config.api_tls_secret_name:
            listeners.append(
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "hostname": config.api_host,
                    "allowedRoutes": from_app_namespace,
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
                "namespace": ns,
                # Programmed: an address is assigned (of the Service type apiExposure chose)
                # and the proxy replicas are available.
                "annotations": {
                    "pulumi.com/waitFor": "condition=Programmed",
                    "pulumi.com/timeoutSeconds": str(config.readiness_timeout_seconds),
                },
            },
            spec={"gatewayClassName": GATEWAY_NAME, "listeners": listeners},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.chart, gateway_class]),
        )
        gateway_ref: dict[str, str] = {"name": GATEWAY_NAME, "namespace": config.ingress_namespace}
        app_ns = app_namespace.metadata["name"]
        after_gateway = pulumi.ResourceOptions(parent=self, depends_on=[self.gateway])
        tls = bool(config.api_tls_secret_name)
        self.route = k8s.apiextensions.CustomResource(
            f"{name}-http-route",
            api_version=GATEWAY_API_VERSION,
            kind="HTTPRoute",
            metadata={"name": contract.API_SERVICE_NAME, "namespace": app_ns},
            spec={
                # With TLS the API is served on the HTTPS listener only.
                "parentRefs": [{**gateway_ref, "sectionName": "https"} if tls else gateway_ref],
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
            opts=after_gateway,
        )
        if tls:
            # Plain HTTP only answers with a permanent redirect to the same URL over HTTPS.
            self.https_redirect = k8s.apiextensions.CustomResource(
                f"{name}-https-redirect",
                api_version=GATEWAY_API_VERSION,
                kind="HTTPRoute",
                metadata={"name": HTTPS_REDIRECT_ROUTE, "namespace": app_ns},
                spec={
                    "parentRefs": [{**gateway_ref, "sectionName": "http"}],
                    "hostnames": [config.api_host],
                    "rules": [
                        {
                            "filters": [
                                {
                                    "type": "RequestRedirect",
                                    "requestRedirect": {"scheme": "https", "statusCode": 301},
                                }
                            ]
                        }
                    ],
                },
                opts=after_gateway,
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
            **config.chart_sources()["ingressNginxChart"].chart_args(),
            namespace=ingress_namespace.metadata["name"],
            values=charts.ingress_nginx_values(config, NGINX_CLASS),
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
        annotations: dict[str, str] = {}
        if config.api_tls_secret_name:
            spec["tls"] = [{"hosts": [config.api_host], "secretName": config.api_tls_secret_name}]
            # ingress-nginx redirects to HTTPS when a TLS section exists; say so explicitly.
            annotations["nginx.ingress.kubernetes.io/ssl-redirect"] = "true"
        if config.api_exposure != "LoadBalancer":
            # Pulumi awaits an Ingress until it has a load-balancer address, which only a
            # LoadBalancer Service gives; the chart's controller Deployment is awaited instead.
            annotations["pulumi.com/skipAwait"] = "true"
        self.route = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={
                "name": contract.API_SERVICE_NAME,
                "namespace": app_namespace.metadata["name"],
                "annotations": annotations,
            },
            spec=body(spec),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.chart]),
        )
