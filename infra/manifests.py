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
        origins = ", ".join(crd_set.origin for crd_set in self.crd_sets)
        return validate_built_in(
            manifest,
            unknown=f"{api_version} {manifest.get('kind')}: not a Kubernetes "
            f"{KUBERNETES_VERSION} kind, and no CRD of this stack ({origins}) serves it",
        )

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


def validate_built_in(manifest: dict[str, Any], unknown: str | None = None) -> list[str]:
    """Errors of a built-in kind; ``unknown`` (or a generic message) when it is none."""
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = "/".join(str(p) for p in error.path)
        return [f"{path}: {error.message}"]
    except kubernetes_validate.InvalidSchemaError as error:
        return [str(error)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [unknown or f"no Kubernetes {KUBERNETES_VERSION} schema: {error}"]
    return []
