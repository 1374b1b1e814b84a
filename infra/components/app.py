"""The application: API and worker Deployments with their config, Secret, Service, PDBs and
NetworkPolicies. Names, ports, paths and variables come from ``services.core.contract``."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import StackConfig, StackSecrets
from infra.k8s import (
    body,
    labels,
    resources,
    restricted_container_security,
    restricted_pod_security,
    selector,
    spread_over_zones_and_nodes,
)
from services.core import contract
from services.core.contract import env_var

APP_UID = 10001
"""Matches the non-root user created in services/*/Dockerfile."""
WORKER_WORKDIR = "/var/lib/kafka-tasks"
"""faust keeps its data directory relative to the working directory; with a read-only root
filesystem that directory must be a writable volume."""
WORKER_SHUTDOWN_MARGIN_SECONDS = 15
"""Extra time Kubernetes grants past the worker's own shutdown grace before it kills it."""


def app_settings(config: StackConfig) -> dict[str, str]:
    """The non-secret KT_* settings both services read (see services/core/settings.py)."""
    return {
        env_var("namespace"): config.task_namespace,
        env_var("kafka_bootstrap_servers"): config.kafka_bootstrap,
        # In a container the API must listen on all interfaces, not the 127.0.0.1 default.
        env_var("api_host"): "0.0.0.0",
        env_var("api_port"): str(contract.API_PORT),
        env_var("worker_web_port"): str(contract.WORKER_HEALTH_PORT),
        # The kubelet probes the worker's health server on the pod IP.
        env_var("worker_web_bind"): "0.0.0.0",
        # Strimzi's KafkaTopics own the topics here; the services must not create them.
        env_var("declare_topics"): "false",
        env_var("worker_concurrency"): str(config.worker_concurrency),
        # A cluster endpoint needs redis-py's cluster client (the keys are the same).
        env_var("redis_cluster"): str(config.redis_mode == "cluster-external").lower(),
        # The ScaledObject's own thresholds, so the dashboard and `kafka-tasks lag` show the
        # replicas KEDA will ask for (services/core/autoscaling.py).
        env_var("autoscale_lag_threshold"): str(config.lag_threshold),
        env_var("autoscale_retry_lag_threshold"): str(config.retry_lag_threshold),
        env_var("autoscale_activation_lag_threshold"): str(config.activation_lag_threshold),
        env_var("autoscale_min_replicas"): str(config.worker_min_replicas),
        env_var("autoscale_max_replicas"): str(config.worker_max_replicas),
        env_var("autoscale_allow_idle_consumers"): str(config.allow_idle_consumers).lower(),
        env_var("autoscale_limit_to_partitions_with_lag"): str(
            config.limit_to_partitions_with_lag
        ).lower(),
        env_var("log_level"): config.log_level,
        env_var("log_json"): "true",
    }


def http_probe(path: str, port: int, *, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": failure_threshold,
    }


class Application(pulumi.ComponentResource):
    """API + workers. ``depends_on`` holds what must be Ready first (topics, Redis)."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: StackSecrets,
        namespace: k8s.core.v1.Namespace,
        redis_url: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:app:Application", name, None, opts)
        ns = namespace.metadata["name"]
        child = pulumi.ResourceOptions(parent=self)

        # No fixed names: a changed ConfigMap or Secret gets a new name, which rolls the pods.
        settings = k8s.core.v1.ConfigMap(
            f"{name}-settings",
            metadata={"namespace": ns, "labels": labels("kafka-tasks", "settings")},
            data=app_settings(config),
            opts=child,
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata={"namespace": ns, "labels": labels("kafka-tasks", "settings")},
            string_data={
                env_var("redis_url"): redis_url,
                env_var("api_keys"): secrets.api_keys,
            },
            opts=child,
        )
        env_from = [
            {"configMapRef": {"name": settings.metadata["name"]}},
            {"secretRef": {"name": self.secret.metadata["name"]}},
        ]

        def pod_spec(service: str, container: dict[str, Any], **extra: Any) -> dict[str, Any]:
            return {
                "metadata": {"labels": labels(service, _component(service))},
                "spec": {
                    # Service-link variables (e.g. WEB_PORT from a Service called "web")
                    # would override faust's own settings.
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "securityContext": restricted_pod_security(APP_UID),
                    "topologySpreadConstraints": spread_over_zones_and_nodes(service),
                    "containers": [
                        {
                            "name": service,
                            "envFrom": env_from,
                            "securityContext": restricted_container_security(),
                            **container,
                        }
                    ],
                    **extra,
                },
            }

        api = contract.API_SERVICE_NAME
        self.api = k8s.apps.v1.Deployment(
            f"{name}-api",
            metadata={"name": api, "namespace": ns, "labels": labels(api, "api")},
            spec=body(
                {
                    "replicas": config.api_replicas,
                    "selector": {"matchLabels": selector(api)},
                    "template": pod_spec(
                        api,
                        {
                            "image": config.api_image,
                            "args": ["python", "-m", "services.api"],
                            "ports": [{"name": "http", "containerPort": contract.API_PORT}],
                            "resources": resources(
                                config.api_cpu_request,
                                config.api_cpu_limit,
                                config.api_memory_request,
                                config.api_memory_limit,
                            ),
                            "livenessProbe": http_probe(
                                contract.API_LIVENESS_PATH, contract.API_PORT, failure_threshold=3
                            ),
                            "readinessProbe": http_probe(
                                contract.API_READINESS_PATH, contract.API_PORT, failure_threshold=2
                            ),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        },
                        volumes=[{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    ),
                }
            ),
            opts=child,
        )
        self.api_service = k8s.core.v1.Service(
            f"{name}-api-service",
            metadata={"name": api, "namespace": ns, "labels": labels(api, "api")},
            spec=body(
                {
                    "selector": selector(api),
                    "ports": [{"name": "http", "port": contract.API_PORT, "targetPort": "http"}],
                }
            ),
            opts=child,
        )

        worker = contract.WORKER_SERVICE_NAME
        self.worker = k8s.apps.v1.Deployment(
            f"{name}-worker",
            metadata={"name": worker, "namespace": ns, "labels": labels(worker, "worker")},
            spec=body(
                {
                    # No replicas: KEDA's HPA owns the count, and a value here would fight it on
                    # every `pulumi up`.
                    "selector": {"matchLabels": selector(worker)},
                    "template": pod_spec(
                        worker,
                        {
                            "image": config.worker_image,
                            "args": ["python", "-m", "services.worker"],
                            "workingDir": WORKER_WORKDIR,
                            "ports": [
                                {"name": "web", "containerPort": contract.WORKER_HEALTH_PORT}
                            ],
                            "resources": resources(
                                config.worker_cpu_request,
                                config.worker_cpu_limit,
                                config.worker_memory_request,
                                config.worker_memory_limit,
                            ),
                            "livenessProbe": http_probe(
                                contract.WORKER_LIVENESS_PATH,
                                contract.WORKER_HEALTH_PORT,
                                failure_threshold=6,
                            ),
                            "readinessProbe": http_probe(
                                contract.WORKER_READINESS_PATH,
                                contract.WORKER_HEALTH_PORT,
                                failure_threshold=3,
                            ),
                            # A rebalance after start-up takes a while; do not kill the pod for it.
                            "startupProbe": {
                                **http_probe(
                                    contract.WORKER_LIVENESS_PATH,
                                    contract.WORKER_HEALTH_PORT,
                                    failure_threshold=30,
                                ),
                                "periodSeconds": 5,
                            },
                            "volumeMounts": [
                                {"name": "work", "mountPath": WORKER_WORKDIR},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        },
                        volumes=[
                            {"name": "work", "emptyDir": {"sizeLimit": "1Gi"}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        ],
                        terminationGracePeriodSeconds=30 + WORKER_SHUTDOWN_MARGIN_SECONDS,
                    ),
                }
            ),
            opts=child,
        )

        # maxUnavailable (not minAvailable) so a single replica never blocks a node drain.
        self.disruption_budgets = [
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{service}-pdb",
                metadata={"name": service, "namespace": ns, "labels": labels(service, "pdb")},
                spec=body({"maxUnavailable": 1, "selector": {"matchLabels": selector(service)}}),
                opts=child,
            )
            for service in (api, worker)
        ]

        from_ingress_namespace = {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": config.ingress_namespace}
            }
        }
        # Nothing in the app namespace accepts traffic unless a policy below (or Redis's own)
        # allows it; the API accepts it only from the ingress namespace.
        self.network_policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-default-deny-ingress",
                metadata={"name": "default-deny-ingress", "namespace": ns},
                spec=body({"podSelector": {}, "policyTypes": ["Ingress"]}),
                opts=child,
            ),
            k8s.networking.v1.NetworkPolicy(
                f"{name}-api-from-ingress",
                metadata={"name": "api-from-ingress", "namespace": ns},
                spec=body(
                    {
                        "podSelector": {"matchLabels": selector(api)},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [from_ingress_namespace],
                                "ports": [{"protocol": "TCP", "port": contract.API_PORT}],
                            }
                        ],
                    }
                ),
                opts=child,
            ),
        ]
        self.register_outputs(
            {
                "apiDeployment": self.api.metadata["name"],
                "workerDeployment": self.worker.metadata["name"],
                "settings": json.dumps(sorted(app_settings(config))),
            }
        )


def _component(service: str) -> str:
    return "api" if service == contract.API_SERVICE_NAME else "worker"


def kafka_client_peers(config: StackConfig, keda_operator: str) -> list[dict[str, Any]]:
    """NetworkPolicy peers allowed on the Kafka listener: our pods and KEDA's lag reader."""
    return [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": config.app_namespace}
            },
            "podSelector": {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/name",
                        "operator": "In",
                        "values": [contract.API_SERVICE_NAME, contract.WORKER_SERVICE_NAME],
                    }
                ]
            },
        },
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": config.keda_namespace}
            },
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": keda_operator}},
        },
    ]
