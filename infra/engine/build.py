"""Building the engine (scripts/build-engine.sh with the pinned versions) and the shell
variables that run the built CLI by hand."""

from __future__ import annotations

import os
import shlex
import subprocess

from infra.engine.versions import paths
from infra.render import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-engine.sh"


def build() -> int:
    """Build whatever is missing from the engine cache; the script's exit code."""
    environment = {**os.environ, **paths().build_environment()}
    return subprocess.run([str(BUILD_SCRIPT)], env=environment, check=False).returncode


def shell_exports() -> list[str]:
    """``export`` lines that put the cached pulumi and helm first on PATH, with the plugin."""
    engine = paths()
    variables = {
        "PATH": f"{engine.cli.parent}:{engine.helm.parent}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(engine.pulumi_home),
        "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
