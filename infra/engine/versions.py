"""Which engine the checks run, and where its builds are cached (outside the repository, so
every clone, CI's included, reuses them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

PULUMI_CLI_VERSION = "v3.274.1"
"""github.com/pulumi/pulumi/pkg/v3 and sdk/v3 (the module proxy serves pkg/v3 from 3.274.0)."""
PROVIDER_MODULE_VERSION = "v4.0.0-20260115033456-f47bc2d6f199"
"""github.com/pulumi/pulumi-kubernetes/provider/v4: the proxy serves only pseudo-versions;
this is commit f47bc2d of 2026-01-15, between the 4.24 and 4.25 releases of the provider."""
HELM_VERSION = "v3.18.6"
"""helm.sh/helm/v3, the Helm library that provider commit embeds (its go.mod): the hook
check renders charts with the same templating code the provider uses."""
PROVIDER_PLUGIN_VERSION = version("pulumi-kubernetes")
"""The plugin version the locked Python SDK asks the engine for (4.34.2). The provider build
above is installed under it; the engine warns about the mismatch and runs it."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-tasks" / "engine"


@dataclass(frozen=True)
class EnginePaths:
    root: Path

    @property
    def cli_dir(self) -> Path:
        """Holds bin/pulumi (the layout PulumiCommand expects)."""
        return self.root / f"pulumi-{PULUMI_CLI_VERSION}"

    @property
    def cli(self) -> Path:
        return self.cli_dir / "bin" / "pulumi"

    @property
    def provider_dir(self) -> Path:
        return self.root / f"kubernetes-{PROVIDER_MODULE_VERSION}"

    @property
    def helm_dir(self) -> Path:
        return self.root / f"helm-{HELM_VERSION}"

    @property
    def helm(self) -> Path:
        return self.helm_dir / "bin" / "helm"

    @property
    def pulumi_home(self) -> Path:
        """PULUMI_HOME with the provider installed as plugin PROVIDER_PLUGIN_VERSION."""
        return self.root / f"home-{PULUMI_CLI_VERSION}-{PROVIDER_PLUGIN_VERSION}"

    def build_environment(self) -> dict[str, str]:
        """What scripts/build-engine.sh reads."""
        return {
            "PULUMI_CLI_VERSION": PULUMI_CLI_VERSION,
            "PROVIDER_MODULE_VERSION": PROVIDER_MODULE_VERSION,
            "PROVIDER_PLUGIN_VERSION": PROVIDER_PLUGIN_VERSION,
            "HELM_VERSION": HELM_VERSION,
            "ENGINE_CACHE": str(self.root),
            "PULUMI_CLI_DIR": str(self.cli_dir),
            "PROVIDER_DIR": str(self.provider_dir),
            "HELM_DIR": str(self.helm_dir),
            "PULUMI_HOME_DIR": str(self.pulumi_home),
        }

    def missing(self) -> list[str]:
        """Parts not built yet, in words; [] when the engine is ready."""
        parts = {
            "the Pulumi CLI": self.cli,
            "the Kubernetes provider": self.provider_dir / "bin" / "pulumi-resource-kubernetes",
            "helm": self.helm,
            "the provider plugin install": self.pulumi_home
            / f".installed-{PROVIDER_PLUGIN_VERSION}",
        }
        return [f"{what} ({path})" for what, path in parts.items() if not path.exists()]


def paths() -> EnginePaths:
    return EnginePaths(cache_root())
