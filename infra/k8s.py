"""Small shared builders for Kubernetes objects: labels, readiness waits, hardened pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WAIT_FOR_ANNOTATION = "pulumi.com/waitFor"
"""pulumi-kubernetes does not await custom resources unless told what "ready" means."""
TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"

PART_OF = "kafka-tasks"


def labels(name: str, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels; ``name`` also selects the pods."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(name: str) -> dict[str, str]:
    """The immutable subset of ``labels`` that Deployments and Services select on."""
    return {"app.kubernetes.io/name": name}


def wait_until_ready(timeout_seconds: int) -> dict[str, str]:
    """Annotations that make ``pulumi up`` block until the resource reports Ready=True."""
    return {
        WAIT_FOR_ANNOTATION: "condition=Ready",
        TIMEOUT_ANNOTATION: str(timeout_seconds),
    }


def restricted_container_security() -> dict[str, Any]:
    """The Pod Security Standard "restricted" profile plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security(user_id: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user_id,
        "runAsGroup": user_id,
        "fsGroup": user_id,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def spread_over_zones_and_nodes(name: str) -> list[dict[str, Any]]:
    """Prefer spreading replicas over zones and nodes without blocking scheduling on small
    clusters (ScheduleAnyway): losing one node or zone should not take all replicas."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(name)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def resources(
    cpu_request: str, cpu_limit: str, memory_request: str, memory_limit: str
) -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def body(value: Mapping[str, Any]) -> Any:
    """A Kubernetes object's spec written as in a manifest (camelCase, like the Kubernetes docs).

    The SDK's TypedDicts spell keys in snake_case, so the static type is waived here; the
    rendered objects are checked against the official JSON schemas by ``infra.preview`` and
    ``tests/infra``, which is stricter than the TypedDicts.
    """
    return value
