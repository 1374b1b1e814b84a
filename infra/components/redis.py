"""Redis for task state: an in-cluster Valkey StatefulSet with AOF, or an external URL (a
single managed Redis, or a managed cluster's endpoint).

The in-cluster Valkey knows one ACL user per service (``services.core.access``): the API and
the workers log in as themselves, limited to the namespace's keys and to data and script
commands. Their passwords are derived from ``redisPassword`` (HMAC-SHA256 with the user's
name), so one stack secret rotates them all, and a service's Secret reveals neither the
administrator's password nor another service's. The ACL file (password hashes only) is a
Secret too. With ``redisTlsSecretName`` Valkey serves TLS only.
"""

from __future__ import annotations

import hashlib
import hmac
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
from services.core import access
from services.core.access import Component

REDIS_NAME = "kafka-tasks-redis"
REDIS_HEADLESS_NAME = f"{REDIS_NAME}-headless"
"""The StatefulSet's governing Service: headless, so each pod gets its stable DNS name."""
REDIS_PORT = 6379
VALKEY_UID = 999
"""The uid of the ``valkey`` user in the official image."""
ACL_DIR = "/etc/valkey-acl"
TLS_DIR = "/etc/valkey-tls"
"""Beside the config's read-only mount, not inside it."""
REDIS_ADMIN = "default"
"""Valkey's administrator: ``redisPassword``, for the probes and for operators only."""


def service_password(admin_password: str, component: Component) -> str:
    """A service's Redis password, derived from the stack's ``redisPassword``."""
    return hmac.new(admin_password.encode(), component.user.encode(), hashlib.sha256).hexdigest()


def acl_file(admin_password: str, namespace: str) -> str:
    """Valkey's ACL file: the administrator, and each service limited to ``namespace``."""

    def digest(password: str) -> str:
        return hashlib.sha256(password.encode()).hexdigest()

    lines = [f"user {REDIS_ADMIN} on #{digest(admin_password)} ~* &* +@all"]
    for component in access.REDIS_COMPONENTS:
        password = digest(service_password(admin_password, component))
        lines.append(f"user {component.user} on #{password} {access.redis_rules([namespace])}")
    return "\n".join(lines) + "\n"


def _valkey_conf(config: StackConfig) -> str:
    # Leave a quarter of the memory limit for the AOF rewrite's fork and buffers, and never
    # evict: task records disappear only through their TTL.
    max_memory = int(parse_quantity(config.redis_memory_limit) * 3 / 4)
    tls = (
        [
            "port 0",
            f"tls-port {REDIS_PORT}",
            f"tls-cert-file {TLS_DIR}/tls.crt",
            f"tls-key-file {TLS_DIR}/tls.key",
            f"tls-ca-cert-file {TLS_DIR}/ca.crt",
            "tls-auth-clients no",
        ]
        if config.redis_tls_secret_name
        else []
    )
    return "\n".join(
        [
            "dir /data",
            "appendonly yes",
            "appendfsync everysec",
            f"maxmemory {max_memory}",
            "maxmemory-policy noeviction",
            "protected-mode no",
            f"aclfile {ACL_DIR}/users.acl",
            # The services may RESTORE their own keys (services/core/access.py): every
            # payload is checked in full first.
            "sanitize-dump-payload yes",
            *tls,
            "",
        ]
    )


class Redis(pulumi.ComponentResource):
    """Task state store. ``urls`` holds each service's secret KT_REDIS_URL (its own user in
    internal mode; the one ``redisUrl`` in external mode)."""

    url: pulumi.Output[str]
    urls: dict[Component, pulumi.Output[str]]
    ca_secret: str | None
    """The Secret whose ``ca.crt`` checks Valkey's certificate (internal mode with TLS)."""

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
            self.urls = {component: self.url for component in access.REDIS_COMPONENTS}
            self.ca_secret = None
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
        acl = k8s.core.v1.Secret(
            f"{name}-acl",
            metadata={"namespace": ns, "labels": pod_labels},
            string_data={
                "users.acl": pulumi.Output.from_input(secrets.redis_password).apply(
                    lambda password: acl_file(password, config.task_namespace)
                )
            },
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
        tls = bool(config.redis_tls_secret_name)
        cli_tls = f"--tls --cacert {TLS_DIR}/ca.crt " if tls else ""
        ping = {
            "exec": {
                "command": [
                    "sh",
                    "-c",
                    f'valkey-cli {cli_tls}-a "$REDISCLI_AUTH" --no-auth-warning ping '
                    "| grep -q PONG",
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
                                    # The users, the administrator among them, come from the
                                    # ACL file (a Secret of password hashes).
                                    "args": ["valkey-server", "/etc/valkey/valkey.conf"],
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
                                        {"name": "acl", "mountPath": ACL_DIR, "readOnly": True},
                                        {"name": "tmp", "mountPath": "/tmp"},
                                        *(
                                            [
                                                {
                                                    "name": "tls",
                                                    "mountPath": TLS_DIR,
                                                    "readOnly": True,
                                                }
                                            ]
                                            if tls
                                            else []
                                        ),
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "conf", "configMap": {"name": conf.metadata["name"]}},
                                {"name": "acl", "secret": {"secretName": acl.metadata["name"]}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                                *(
                                    [
                                        {
                                            "name": "tls",
                                            "secret": {"secretName": config.redis_tls_secret_name},
                                        }
                                    ]
                                    if tls
                                    else []
                                ),
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
        scheme = "rediss" if tls else "redis"
        admin_password = pulumi.Output.from_input(secrets.redis_password)

        def service_url(component: Component) -> pulumi.Output[str]:
            return pulumi.Output.secret(
                admin_password.apply(
                    lambda password: (
                        f"{scheme}://{component.user}:"
                        f"{quote(service_password(password, component), safe='')}"
                        f"@{host}:{REDIS_PORT}/0"
                    )
                )
            )

        self.urls = {component: service_url(component) for component in access.REDIS_COMPONENTS}
        self.url = self.urls[Component.API]
        self.ca_secret = config.redis_tls_secret_name or None
        self.register_outputs({"mode": "internal", "host": host, "tls": tls})
