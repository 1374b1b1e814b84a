"""The replica count a KEDA ScaledObject with ``kafka`` triggers would ask for, from lag rows.

This reproduces, without a cluster, the two steps that decide the number of workers:

1. **KEDA's kafka scaler** (``pkg/scalers/kafka_scaler.go``), once per trigger: sum the lag of
   every partition of the trigger's topic, then cap the sum at ``upper bound x lagThreshold``
   where the upper bound is the partition count (or the number of partitions *with* lag under
   ``limitToPartitionsWithLag``). The cap is skipped with ``allowIdleConsumers``. The trigger
   is *active* when its lag is above ``activationLagThreshold``. Two details are kept on
   purpose because they change the answer:

   - a partition the group never committed counts as its **log end offset** with
     ``offsetResetPolicy: earliest`` (not end minus start), and as **1** with ``latest``
     (0 with ``scaleToZeroOnInvalidOffset``);
   - the cap compares ``lag // lagThreshold`` (integer division) with the bound, so a lag
     between ``P x T`` and ``(P + 1) x T`` is *not* capped and the HPA can ask for P + 1.
     ``maxReplicaCount`` (which infra keeps at or below the partition count) is what stops it.

2. **The HPA** KEDA creates (metric type ``AverageValue``): per trigger
   ``ceil(metric / lagThreshold)``, the largest over all triggers, kept at the current count
   when within the HPA's 10 % tolerance, clamped to ``[max(minReplicaCount, 1),
   maxReplicaCount]``. With ``minReplicaCount: 0`` KEDA itself scales to zero when no trigger
   is active (after ``cooldownPeriod``, which a single reading cannot see).

Not modelled: ``excludePersistentLag`` (needs the previous polling cycle's offsets), the HPA's
stabilisation windows and scale-down rate policies (they delay a decision, they do not change
its target).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

HPA_TOLERANCE = 0.1
"""kube-controller-manager's default ``--horizontal-pod-autoscaler-tolerance``."""


class LagRow(Protocol):
    """What is needed of one partition's reading (``services.core.lag.PartitionLag`` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def end_offset(self) -> int: ...

    @property
    def committed(self) -> int | None: ...


@dataclass(frozen=True)
class KafkaTrigger:
    """One ``type: kafka`` trigger of the ScaledObject (its metadata, as KEDA defaults it)."""

    topic: str
    lag_threshold: int = 10
    activation_lag_threshold: int = 0
    offset_reset_policy: Literal["earliest", "latest"] = "latest"
    allow_idle_consumers: bool = False
    limit_to_partitions_with_lag: bool = False
    ensure_even_distribution_of_partitions: bool = False
    scale_to_zero_on_invalid_offset: bool = False
    partition_limitation: frozenset[int] | None = None
    """Only these partitions are read (``partitionLimitation``); None reads all."""

    def __post_init__(self) -> None:
        # The same validation KEDA applies when it parses the trigger metadata.
        if self.lag_threshold <= 0:
            raise ValueError("lagThreshold must be a positive number")
        if self.activation_lag_threshold < 0:
            raise ValueError("activationLagThreshold must be a non-negative number")
        if self.allow_idle_consumers and self.limit_to_partitions_with_lag:
            raise ValueError("allowIdleConsumers and limitToPartitionsWithLag cannot both be set")
        if self.limit_to_partitions_with_lag and self.ensure_even_distribution_of_partitions:
            raise ValueError(
                "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot both be set"
            )


@dataclass(frozen=True)
class ScalingPolicy:
    """The parts of a ScaledObject that decide the replica count."""

    triggers: tuple[KafkaTrigger, ...]
    min_replicas: int = 0
    max_replicas: int = 100

    def __post_init__(self) -> None:
        if not self.triggers:
            raise ValueError("a ScaledObject needs at least one trigger")
        if self.min_replicas < 0 or self.max_replicas < 1:
            raise ValueError("minReplicaCount must be >= 0 and maxReplicaCount >= 1")
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicaCount must not exceed maxReplicaCount")

    @classmethod
    def uniform(
        cls,
        topics: Iterable[str],
        *,
        lag_threshold: int,
        min_replicas: int,
        max_replicas: int,
        activation_lag_threshold: int = 0,
        offset_reset_policy: Literal["earliest", "latest"] = "earliest",
        allow_idle_consumers: bool = False,
        limit_to_partitions_with_lag: bool = False,
        extra: Sequence[KafkaTrigger] = (),
    ) -> ScalingPolicy:
        """One trigger per topic with the same thresholds (how infra declares task topics),
        plus ``extra`` triggers (e.g. the retry topic with its own threshold)."""
        triggers = tuple(
            KafkaTrigger(
                topic=topic,
                lag_threshold=lag_threshold,
                activation_lag_threshold=activation_lag_threshold,
                offset_reset_policy=offset_reset_policy,
                allow_idle_consumers=allow_idle_consumers,
                limit_to_partitions_with_lag=limit_to_partitions_with_lag,
            )
            for topic in topics
        )
        return cls(triggers + tuple(extra), min_replicas, max_replicas)


@dataclass(frozen=True)
class TriggerReading:
    """What KEDA reports for one trigger, and what the HPA makes of it."""

    topic: str
    partitions: int
    partitions_with_lag: int
    lag: int
    """Summed partition lag, as KEDA computes it (before the cap)."""
    metric: int
    """The value KEDA hands the HPA (the lag after the partition cap)."""
    lag_threshold: int
    active: bool
    replicas: int
    """``ceil(metric / lagThreshold)``: what this trigger alone asks for."""
    capped: bool


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    """The replica count the ScaledObject would settle on."""
    active: bool
    """Any trigger above its activation threshold."""
    triggers: tuple[TriggerReading, ...]
    reason: str
    limited_by: Literal["metric", "min", "max", "tolerance", "inactive"] = "metric"
    notes: tuple[str, ...] = field(default=())


def partition_lag(row: LagRow, trigger: KafkaTrigger) -> int:
    """One partition's lag exactly as KEDA's ``getLagForPartition`` reports it."""
    if row.committed is None or row.committed < 0:
        if trigger.scale_to_zero_on_invalid_offset:
            return 0
        # ``latest``: KEDA cannot know the backlog, so it reports 1 to get one consumer going.
        return 1 if trigger.offset_reset_policy == "latest" else row.end_offset
    return row.end_offset - row.committed


def _factors(number: int) -> list[int]:
    return [candidate for candidate in range(1, number + 1) if number % candidate == 0]


def read_trigger(rows: Iterable[LagRow], trigger: KafkaTrigger) -> TriggerReading:
    """KEDA's ``getTotalLag`` + activity for one trigger over the rows of its topic."""
    mine = [
        row
        for row in rows
        if row.topic == trigger.topic
        and (trigger.partition_limitation is None or row.partition in trigger.partition_limitation)
    ]
    lags = [partition_lag(row, trigger) for row in mine]
    total = sum(lags)
    partitions = len(mine)
    with_lag = sum(1 for lag in lags if lag > 0)
    threshold = trigger.lag_threshold
    metric = total
    if (
        not trigger.allow_idle_consumers
        or trigger.limit_to_partitions_with_lag
        or trigger.ensure_even_distribution_of_partitions
    ):
        bound = partitions
        if trigger.ensure_even_distribution_of_partitions:
            factor = next((f for f in _factors(partitions) if f * threshold >= metric), partitions)
            metric = factor * threshold
        if trigger.limit_to_partitions_with_lag:
            bound = with_lag
        # Integer division, as KEDA does: see the module docstring.
        if metric // threshold > bound:
            metric = bound * threshold
    return TriggerReading(
        topic=trigger.topic,
        partitions=partitions,
        partitions_with_lag=with_lag,
        lag=total,
        metric=metric,
        lag_threshold=threshold,
        active=total > trigger.activation_lag_threshold,
        replicas=math.ceil(metric / threshold) if metric > 0 else 0,
        capped=metric < total,
    )


def desired_replicas(
    rows: Iterable[LagRow], policy: ScalingPolicy, *, current_replicas: int | None = None
) -> ScalingDecision:
    """The replica count ``policy`` would ask for given the lag ``rows``.

    ``current_replicas`` enables the HPA's tolerance (no change while every trigger's
    ``metric / (threshold x current)`` is within 10 % of 1); without it the raw target is given.
    """
    rows = list(rows)
    readings = tuple(read_trigger(rows, trigger) for trigger in policy.triggers)
    active = any(reading.active for reading in readings)
    notes = tuple(
        f"{r.topic}: lag {r.lag} capped to {r.metric} ({r.partitions} partitions)"
        for r in readings
        if r.capped
    )
    if not active and policy.min_replicas == 0:
        return ScalingDecision(
            0, False, readings, "no trigger above its activation threshold", "inactive", notes
        )
    wanted = max(reading.replicas for reading in readings)
    limited_by: Literal["metric", "min", "max", "tolerance", "inactive"] = "metric"
    if current_replicas is not None and current_replicas > 0:
        # The HPA skips a change when the metric is already close to target (per metric; a
        # metric inside the band proposes the current count, the max over metrics wins).
        proposals = []
        for reading in readings:
            ratio = reading.metric / (reading.lag_threshold * current_replicas)
            inside = abs(ratio - 1.0) <= HPA_TOLERANCE
            proposals.append(current_replicas if inside else reading.replicas)
        if max(proposals) != wanted:
            limited_by = "tolerance"
        wanted = max(proposals)
    floor = max(policy.min_replicas, 1)
    replicas = min(max(wanted, floor), policy.max_replicas)
    if replicas > wanted:
        limited_by = "min"
    elif replicas < wanted:
        limited_by = "max"
    reason = {
        "metric": f"largest trigger asks for {wanted}",
        "tolerance": f"within the HPA's {HPA_TOLERANCE:.0%} tolerance of {current_replicas}",
        "min": f"raised to minReplicaCount {floor}" if policy.min_replicas else "at least 1",
        "max": f"capped at maxReplicaCount {policy.max_replicas} (asked for {wanted})",
    }[limited_by]
    return ScalingDecision(replicas, active, readings, reason, limited_by, notes)


def scaling_table(decision: ScalingDecision) -> tuple[list[str], list[list[str]]]:
    """Headers and rows for a table of ``decision`` (the CLI and reports print it as is).

    One row per trigger, then a total row with the replica count the ScaledObject asks for.
    """
    headers = ["topic", "partitions", "with lag", "lag", "metric", "threshold", "active", "wants"]
    body = [
        [
            r.topic,
            str(r.partitions),
            str(r.partitions_with_lag),
            str(r.lag),
            f"{r.metric} (capped)" if r.capped else str(r.metric),
            str(r.lag_threshold),
            "yes" if r.active else "no",
            str(r.replicas),
        ]
        for r in decision.triggers
    ]
    total_lag = sum(r.lag for r in decision.triggers)
    body.append(
        [
            "ScaledObject",
            str(sum(r.partitions for r in decision.triggers)),
            str(sum(r.partitions_with_lag for r in decision.triggers)),
            str(total_lag),
            "",
            "",
            "yes" if decision.active else "no",
            f"{decision.replicas} ({decision.reason})",
        ]
    )
    return headers, body
