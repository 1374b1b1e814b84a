"""KEDA's kafka scaler for the tests: built once per KEDA version and cached outside the
repository (``make test`` builds it before pytest starts, with a progress bar)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kedacheck.build import ensure_scaler

ScalerFor = Callable[[str], Path]


@pytest.fixture(scope="session")
def keda_scaler() -> ScalerFor:
    """The scaler program for a KEDA chart version."""
    return lambda chart_version: ensure_scaler(chart_version).binary
