"""Redis for task state: an in-cluster Valkey StatefulSet with AOF, or an external URL (a
single managed Redis, or a managed cluster's endpoint)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
)
from infra.quantities import parse_quantity

REDIS_NAME = "kafka-tasks-redis"
REDIS_HEADLESS_NAME = f"{REDIS_NAME}-headless"
"""The StatefulSet's governing Service: headless, so each pod gets its stable DNS name."""
REDIS_PORT = 6379
VALKEY_UID = 999
"""The uid of the ``valkey`` user in the official image."""


def _valkey_conf(config: StackConfig) -> str:
    # Leave a quarter of the memory limit for the AOF rewrite's fork and buffers, and never
    # evict: task records disappear only through their TTL.
    max_memory = int(parse_quantity(config.redis_memory_limit) * 3 / 4)
    return "\n".join(
        [
            "dir /data",
            "appendonly yes",
            "appendfsync everysec",
            f"maxmemory {max_memory}",
            "maxmemory-policy noeviction",
            "protected-mode no",
            "",
        ]
    )


class Redis(pulumi.ComponentResource):
    """Task state store. ``url`` is the full secret URL the services read as KT_REDIS_URL."""

    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        secrets: StackSecrets,
        namespace: k8s.core.v1.Namespace,
        client_names: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("kafka-tasks:platform:Redis", name, None, opts)
        self.statefulset: k8s.apps.v1.StatefulSet | None = None
        if config.redis_mode != "internal":
            if secrets.redis_url is None:  # load() refuses this; kept for the type checker
                raise ValueError(f"redisUrl is required in {config.redis_mode} mode")
            self.url = pulumi.Output.secret(secrets.redis_url)
            self.register_outputs({"mode": config.redis_mode})
            return
        if secrets.redis_password is None:
            raise ValueError("redisPassword is required in internal mode")

        ns = namespace.metadata["name"]
        pod_labels = labels(REDIS_NAME, "state-store")
        child = pulumi.ResourceOptions(parent=self)

        auth = k8s.core.v1.Secret(
            f"{name}-auth",
            metadata={"namespace": ns, "labels": pod_labels},
            string_data={"password": secrets.redis_password},
            opts=child,
        )
        conf = k8s.core.v1.ConfigMap(
            f"{name}-conf",
            metadata={"namespace": ns, "labels": pod_labels},
            data={"valkey.conf": _valkey_conf(config)},
            opts=child,
        )
        password_env = {
            "name": "REDISCLI_AUTH",
            "valueFrom": {"secretKeyRef": {"name": auth.metadata["name"], "key": "password"}},
        }
        volume_claim: dict[str, Any] = {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": config.redis_storage_size}},
            },
        }
        if config.redis_storage_class:
            volume_claim["spec"]["storageClassName"] = config.redis_storage_class

        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": REDIS_NAME, "namespace": ns, "labels": pod_labels},
            spec=body(
                {
                    "selector": selector(REDIS_NAME),
                    "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
                }
            ),
            opts=child,
        )
        # A StatefulSet's serviceName must name a headless Service (clusterIP: None); clients
        # keep using the ClusterIP Service above.
        self.headless_service = k8s.core.v1.Service(
            f"{name}-headless-service",
            metadata={"name": REDIS_HEADLESS_NAME, "namespace": ns, "labels": pod_labels},
            spec=body(
                {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": selector(REDIS_NAME),
                    "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
                }
            ),
            opts=child,
        )
        ping = {
            "exec": {
                "command": [
                    "sh",
                    "-c",
                    'valkey-cli -a "$REDISCLI_AUTH" --no-auth-warning ping | grep -q PONG',
                ]
            },
            "periodSeconds": 10,
            "timeoutSeconds": 3,
        }
        self.statefulset = k8s.apps.v1.StatefulSet(
            f"{name}-statefulset",
            metadata={"name": REDIS_NAME, "namespace": ns, "labels": pod_labels},
            spec=body(
                {
                    "serviceName": REDIS_HEADLESS_NAME,
                    "replicas": 1,
                    "selector": {"matchLabels": selector(REDIS_NAME)},
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": {
                            "enableServiceLinks": False,
                            "automountServiceAccountToken": False,
                            "securityContext": restricted_pod_security(VALKEY_UID),
                            "containers": [
                                {
                                    "name": "valkey",
                                    "image": config.redis_image,
                                    # $(VAR) is expanded by the kubelet, so the password never
                                    # lands in the ConfigMap.
                                    "args": [
                                        "valkey-server",
                                        "/etc/valkey/valkey.conf",
                                        "--requirepass",
                                        "$(REDISCLI_AUTH)",
                                    ],
                                    "env": [password_env],
                                    "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                                    "resources": resources(
                                        config.redis_cpu_request,
                                        config.redis_cpu_limit,
                                        config.redis_memory_request,
                                        config.redis_memory_limit,
                                    ),
                                    "securityContext": restricted_container_security(),
                                    "readinessProbe": ping,
                                    "livenessProbe": {
                                        "tcpSocket": {"port": "redis"},
                                        "periodSeconds": 10,
                                        "failureThreshold": 6,
                                    },
                                    "volumeMounts": [
                                        {"name": "data", "mountPath": "/data"},
                                        {
                                            "name": "conf",
                                            "mountPath": "/etc/valkey",
                                            "readOnly": True,
                                        },
                                        {"name": "tmp", "mountPath": "/tmp"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "conf", "configMap": {"name": conf.metadata["name"]}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                            ],
                        },
                    },
                    "volumeClaimTemplates": [volume_claim],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.headless_service]),
        )
        # Only the API and the workers may talk to Redis.
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-clients",
            metadata={"namespace": ns, "labels": pod_labels},
            spec=body(
                {
                    "podSelector": {"matchLabels": selector(REDIS_NAME)},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {
                                    "podSelector": {
                                        "matchExpressions": [
                                            {
                                                "key": "app.kubernetes.io/name",
                                                "operator": "In",
                                                "values": client_names,
                                            }
                                        ]
                                    }
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                        }
                    ],
                }
            ),
            opts=child,
        )
        host = f"{REDIS_NAME}.{config.app_namespace}.svc"
        self.url = pulumi.Output.secret(
            pulumi.Output.from_input(secrets.redis_password).apply(
                lambda password: f"redis://:{quote(password, safe='')}@{host}:{REDIS_PORT}/0"
            )
        )
        self.register_outputs({"mode": "internal", "host": host})
