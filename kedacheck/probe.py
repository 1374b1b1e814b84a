"""One ScaledObject under test: KEDA's scalers for it, the model's policy read from the same
manifest, and every reading taken, each with what the case expected of KEDA (if anything)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedacheck import scaler
from kedacheck.compare import Figures, consumer_group, read_together, static_differences
from kedacheck.errors import KedaCheckError
from services.core.lag import OffsetReader
from services.core.scaling import ScalingPolicy, committed_offsets


@dataclass(frozen=True)
class Expected:
    """What KEDA should report, worked out by hand from its source (``None``: not checked).
    ``metrics`` maps a trigger's topic to its metric."""

    metrics: Mapping[str, int] = field(default_factory=dict)
    active: bool | None = None
    replicas: int | None = None


@dataclass(frozen=True)
class Reading:
    figures: Figures
    expected: Expected | None = None

    def problems(self) -> list[str]:
        """KEDA against the model, and KEDA against the hand-worked expectation."""
        found = [f"{self.figures.label}: {d}" for d in self.figures.differences()]
        if self.expected is None:
            return found
        label = self.figures.label
        for topic, metric in self.expected.metrics.items():
            got = self.figures.trigger(topic)
            if got.keda_metric_milli != metric * 1000:
                found.append(
                    f"{label}: {topic}: KEDA's metric {got.keda_metric}, expected {metric}"
                )
        if self.expected.active is not None and self.figures.keda_active != self.expected.active:
            found.append(f"{label}: KEDA active {self.figures.keda_active}, expected otherwise")
        if self.expected.replicas is not None and self.figures.keda_replicas != (
            self.expected.replicas
        ):
            found.append(
                f"{label}: replicas {self.figures.keda_replicas}, expected {self.expected.replicas}"
            )
        return found


@dataclass
class Probe:
    keda: scaler.KedaScaler
    manifest: dict[str, Any]
    policy: ScalingPolicy
    lag: OffsetReader
    group: str
    readings: list[Reading]
    _previous: dict[tuple[str, int], int] | None = None

    async def read(
        self, label: str, *, current: int | None = None, expect: Expected | None = None
    ) -> Reading:
        """Poll KEDA and the model on the same offsets and record the reading."""
        figures, rows = await read_together(
            self.keda,
            self.policy,
            self.lag,
            self.group,
            label=label,
            current_replicas=current,
            previous=self._previous,
        )
        self._previous = committed_offsets(rows)
        reading = Reading(figures, expect)
        self.readings.append(reading)
        return reading


@contextlib.asynccontextmanager
async def probing(
    binary: Path,
    manifest: dict[str, Any],
    bootstrap: str,
    readings: list[Reading],
    *,
    verbose: bool = False,
) -> AsyncIterator[Probe]:
    """KEDA's scalers for ``manifest`` and the model for it; refuses to start when what KEDA
    built (HPA bounds, metric targets) differs from what the model reads."""
    policy = ScalingPolicy.from_scaled_object(manifest)
    async with (
        scaler.running(binary, manifest, verbose=verbose) as keda,
        OffsetReader(bootstrap) as lag,
    ):
        differences = static_differences(keda.scaled_object, policy)
        if differences:
            raise KedaCheckError(
                "KEDA and the model read the ScaledObject differently: " + "; ".join(differences)
            )
        yield Probe(keda, manifest, policy, lag, consumer_group(manifest), readings)
