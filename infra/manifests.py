"""Validation of rendered Kubernetes objects: built-in kinds against the official Kubernetes
JSON schemas (kubernetes-validate), custom resources against the real CRDs of the operator
versions the stack deploys (infra.crds, infra.crd_schema)."""

from __future__ import annotations

from functools import cache
from typing import Any

import kubernetes_validate

from infra import crds
from infra.config import StackConfig
from infra.crd_schema import CrdSchemas

KUBERNETES_VERSION = "1.34.0"
"""The Kubernetes version whose schemas the built-in kinds are checked against."""


@cache
def _schemas(source: crds.CrdSource) -> CrdSchemas:
    return CrdSchemas(crds.load(source), str(source))


class ManifestValidator:
    """Validates the objects of one stack (its config selects the CRD versions)."""

    def __init__(self, config: StackConfig) -> None:
        self.crd_sets = [_schemas(source) for source in crds.sources_for(config)]

    def validate(self, manifest: dict[str, Any]) -> list[str]:
        """Schema errors of one object; [] when it is valid."""
        api_version = str(manifest.get("apiVersion", ""))
        for crd_set in self.crd_sets:
            if crd_set.covers(api_version):
                errors = crd_set.validate(manifest)
                errors.extend(self._hpa_behavior(manifest))
                return errors
        if "." in api_version.partition("/")[0] and not api_version.startswith(_BUILT_IN_GROUPS):
            return [f"{api_version} {manifest.get('kind')}: no CRD set of this stack serves it"]
        return validate_built_in(manifest)

    def _hpa_behavior(self, manifest: dict[str, Any]) -> list[str]:
        """A ScaledObject's HPA behavior is passed through verbatim to an autoscaling/v2 HPA,
        so check it with that schema too."""
        if manifest.get("kind") != "ScaledObject":
            return []
        advanced = manifest.get("spec", {}).get("advanced") or {}
        behavior = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior")
        if behavior is None:
            return []
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "behavior-check"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        }
        return [
            f"advanced.horizontalPodAutoscalerConfig.behavior: {e}" for e in validate_built_in(hpa)
        ]


_BUILT_IN_GROUPS = (
    "apps/",
    "batch/",
    "policy/",
    "autoscaling/",
    "networking.k8s.io/",
    "rbac.authorization.k8s.io/",
    "apiextensions.k8s.io/",
    "admissionregistration.k8s.io/",
    "scheduling.k8s.io/",
    "storage.k8s.io/",
    "coordination.k8s.io/",
    "discovery.k8s.io/",
    "certificates.k8s.io/",
)


def validate_built_in(manifest: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        return [f"{path}: {error.message}"]
    except kubernetes_validate.InvalidSchemaError as error:
        return [str(error)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"no Kubernetes {KUBERNETES_VERSION} schema: {error}"]
    return []
