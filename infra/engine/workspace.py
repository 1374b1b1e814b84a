"""One stack of this project run by the real Pulumi engine, in a scratch directory.

The Automation API serves the Python language runtime from this process (the program is
``infra.program.define_stack``, inline), so no ``pulumi-language-python`` is needed. The
project's own ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` are copied into the scratch
directory, so the engine applies the declared config types, defaults and secrets exactly as
``pulumi up`` in a checkout would. State goes to a local file backend, secrets are encrypted
with a throwaway passphrase, and the Kubernetes provider runs with
``kubernetes:renderYamlToDirectory``: every object it would apply is written to a directory
instead of a cluster.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from infra.config import PROJECT
from infra.engine.versions import EnginePaths, paths
from infra.errors import EngineNotBuiltError
from infra.render import REPO_ROOT, as_config_string

RENDER_KEY = "kubernetes:renderYamlToDirectory"


def engine_environment(engine: EnginePaths, scratch: Path) -> dict[str, str]:
    """Environment of every CLI call: the cached engine only, a local state, no cluster."""
    return {
        "PULUMI_HOME": str(engine.pulumi_home),
        "PULUMI_BACKEND_URL": f"file://{scratch / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_hex(16),
        # Only the plugins installed in PULUMI_HOME: never a binary found on PATH, never a
        # download (which would fail here and mean the check ran something else).
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "true",
        # The provider must not find a real cluster even where a kubeconfig exists.
        "KUBECONFIG": str(scratch / "no-kubeconfig"),
    }


class EngineStack:
    """``stack`` of this project, run by the real engine in render mode under ``scratch``.
    ``program`` replaces the project's program (tests wrap it to observe what it reads)."""

    def __init__(
        self,
        stack: str,
        scratch: Path,
        *,
        overrides: Mapping[str, Any] | None = None,
        secret_values: Mapping[str, str] | None = None,
        on_output: Callable[[str], Any] | None = None,
        program: Callable[[], None] | None = None,
    ) -> None:
        engine = paths()
        missing = engine.missing()
        if missing:
            raise EngineNotBuiltError(
                "the real Pulumi engine is not built: missing " + ", ".join(missing) + ". "
                "Run `make engine` (cold: ~25 minutes on 2 cores, then cached)."
            )
        from infra.program import define_stack  # late: the program reads config when run

        self.name = stack
        self.scratch = scratch
        self.rendered_dir = scratch / "rendered"
        self.work_dir = scratch / "project"
        self.on_output = on_output
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (scratch / "state").mkdir(exist_ok=True)
        shutil.copyfile(REPO_ROOT / "Pulumi.yaml", self.work_dir / "Pulumi.yaml")
        shutil.copyfile(REPO_ROOT / f"Pulumi.{stack}.yaml", self.work_dir / f"Pulumi.{stack}.yaml")
        # Pulumi.yaml's `main: infra/` must exist next to it; the inline program never reads it.
        (self.work_dir / "infra").mkdir(exist_ok=True)
        self.stack = auto.create_or_select_stack(
            stack_name=stack,
            project_name=PROJECT,
            program=program or define_stack,
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(self.work_dir),
                pulumi_home=str(engine.pulumi_home),
                env_vars=engine_environment(engine, scratch),
                secrets_provider="passphrase",
                pulumi_command=auto.PulumiCommand(root=str(engine.cli_dir)),
            ),
        )
        config = {RENDER_KEY: auto.ConfigValue(str(self.rendered_dir))}
        for key, value in (overrides or {}).items():
            config[f"{PROJECT}:{key}"] = auto.ConfigValue(as_config_string(value))
        for key, value in (secret_values or {}).items():
            config[f"{PROJECT}:{key}"] = auto.ConfigValue(value, secret=True)
        self.stack.set_all_config(config)

    def set(self, **values: Any) -> None:
        """Change plain config values (camelCase keys), as `pulumi config set` would."""
        self.stack.set_all_config(
            {f"{PROJECT}:{k}": auto.ConfigValue(as_config_string(v)) for k, v in values.items()}
        )

    def _output(self, line: str) -> None:
        if self.on_output is not None:
            self.on_output(line)

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        return self.stack.preview(on_output=self._output, color="never", diff=False, **kwargs)

    def up(self, **kwargs: Any) -> auto.UpResult:
        return self.stack.up(on_output=self._output, color="never", **kwargs)

    def destroy(self) -> auto.DestroyResult:
        return self.stack.destroy(on_output=self._output, color="never")

    def state_resources(self) -> list[dict[str, Any]]:
        """The resources in the stack's state (``pulumi stack export``)."""
        deployment = self.stack.export_stack().deployment or {}
        resources: list[dict[str, Any]] = deployment.get("resources") or []
        return resources

    def stack_file(self) -> dict[str, Any]:
        """The stack's config file as the engine left it (secrets encrypted in it)."""
        loaded: dict[str, Any] = yaml.safe_load(
            (self.work_dir / f"Pulumi.{self.name}.yaml").read_text()
        )
        return loaded

    def checkpoint(self) -> dict[str, Any]:
        """The local backend's checkpoint file as stored (``export_stack`` would decrypt)."""
        (path,) = (self.scratch / "state").rglob(f"stacks/{PROJECT}/{self.name}.json")
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    def rendered(self) -> list[dict[str, Any]]:
        """Every object the provider wrote instead of applying it."""
        objects = []
        for path in sorted(self.rendered_dir.rglob("*.yaml")):
            document = yaml.safe_load(path.read_text())
            if isinstance(document, dict):
                objects.append(document)
        return objects


def print_output(prefix: str) -> Callable[[str], None]:
    """An ``on_output`` that streams the engine's lines to stderr (progress for long runs)."""

    def emit(line: str) -> None:
        print(f"{prefix}{line.rstrip()}", file=sys.stderr, flush=True)

    return emit
