"""Where the engine lives, and what a missing build tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.engine import versions
from infra.engine.workspace import EngineStack
from infra.errors import EngineNotBuiltError


def test_the_cache_is_outside_the_repository_and_keyed_by_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    engine = versions.paths()
    assert engine.root == tmp_path / "kafka-tasks" / "engine"
    assert versions.PULUMI_CLI_VERSION in str(engine.cli)
    assert versions.PROVIDER_MODULE_VERSION in str(engine.provider_dir)
    assert versions.HELM_VERSION in str(engine.helm)
    environment = engine.build_environment()
    assert environment["PROVIDER_PLUGIN_VERSION"] == versions.PROVIDER_PLUGIN_VERSION == "4.34.2"


def test_a_missing_engine_says_to_run_make_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(EngineNotBuiltError, match=r"Run `make engine`") as missing:
        EngineStack("dev", tmp_path / "scratch")
    assert "the Pulumi CLI" in str(missing.value)
    assert "the Kubernetes provider" in str(missing.value)
