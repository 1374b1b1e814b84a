"""The Go program's wrapper module: KEDA at the chart's version, with KEDA's own replaces."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from kedacheck.build import (
    KEDA_MODULE,
    cache_root,
    go_environment,
    keda_go_mod,
    module_version,
)
from kedacheck.errors import KedaCheckError
from kedacheck.stacks import chart_version
from tests.kedacheck.conftest import ScalerFor


def test_a_chart_version_is_the_kedas_module_version() -> None:
    assert module_version("2.20.2") == "v2.20.2"
    with pytest.raises(KedaCheckError, match=r"not a release number like 2\.20\.2"):
        module_version("latest")


def test_the_wrapper_requires_keda_at_the_stacks_version_with_kedas_own_replaces(
    keda_scaler: ScalerFor,
) -> None:
    version = chart_version("dev")
    binary = keda_scaler(version)
    assert binary.is_file()
    env = go_environment(cache_root())
    module = cache_root() / module_version(version) / "module"
    wrapper = json.loads(
        subprocess.run(
            ["go", "mod", "edit", "-json", str(module / "go.mod")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    keda = keda_go_mod(module_version(version), env)

    def replaces(mod: dict[str, Any]) -> set[tuple[str, str]]:
        return {(r["Old"]["Path"], r["New"]["Version"]) for r in mod.get("Replace") or []}

    assert replaces(keda), "KEDA's go.mod has replace directives the build depends on"
    assert replaces(wrapper) == replaces(keda)
    required = {r["Path"]: r["Version"] for r in wrapper["Require"]}
    assert required[KEDA_MODULE] == module_version(version)
