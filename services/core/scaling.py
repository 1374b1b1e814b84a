"""The replica count a KEDA ScaledObject with ``kafka`` triggers would ask for, from lag rows.

This reproduces, without a cluster, the steps that decide the number of workers. It is checked
against KEDA's own code (``make keda-check`` and ``tests/kedacheck/``: KEDA's kafka scaler,
built from its Go module, polled on the real local Kafka next to this model).

1. **KEDA's kafka scaler** (``pkg/scalers/kafka_scaler.go``), once per trigger: sum the lag of
   every partition of the trigger's topic, then cap the sum at ``upper bound x lagThreshold``
   where the upper bound is the partition count (or the number of partitions *with* lag under
   ``limitToPartitionsWithLag``). The cap is skipped with ``allowIdleConsumers``. The trigger
   is *active* when its lag is above ``activationLagThreshold``. Details kept on purpose
   because they change the answer:

   - a partition the group never committed counts as its **log end offset** with
     ``offsetResetPolicy: earliest`` (not end minus start), and as **1** with ``latest``
     (0 with ``scaleToZeroOnInvalidOffset``);
   - the cap compares ``lag // lagThreshold`` (integer division) with the bound, so a lag
     between ``P x T`` and ``(P + 1) x T`` is *not* capped and the HPA can ask for P + 1.
     ``maxReplicaCount`` (which infra keeps at or below the partition count) is what stops it;
   - ``excludePersistentLag`` leaves out a committed partition whose offset has not moved since
     the scaler's previous poll (pass that poll's ``committed_offsets``); it still counts for
     activity, and the first poll has nothing to compare with.

2. **KEDA's executor and the HPA** KEDA creates (metric type ``AverageValue``): from zero
   replicas an active ScaledObject is scaled to ``max(minReplicaCount, 1)`` by KEDA; with
   ``minReplicaCount: 0`` and no trigger active KEDA scales to zero (after ``cooldownPeriod``,
   which a single reading cannot see). Otherwise the HPA: per trigger ``ceil(metric /
   lagThreshold)``, unless ``metric / (lagThreshold x current)`` lies within the tolerance band
   ``[1 - 0.1, 1 + 0.1]`` (inclusive, as kube-controller-manager tests it since Kubernetes 1.33;
   ``behavior.scaleUp/scaleDown.tolerance`` can change it), the largest over all triggers,
   clamped to ``[max(minReplicaCount, 1), maxReplicaCount]``.

Not modelled: the HPA's stabilisation windows and rate policies (they delay a decision, they do
not change its target), ``idleReplicaCount``, ``fallback`` and ``scalingModifiers``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

HPA_TOLERANCE = 0.1
"""kube-controller-manager's default ``--horizontal-pod-autoscaler-tolerance``."""
KEDA_DEFAULT_MAX_REPLICAS = 100
"""maxReplicaCount when a ScaledObject leaves it out."""

LimitedBy = Literal["metric", "min", "max", "tolerance", "inactive"]


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


CommittedOffsets = Mapping[tuple[str, int], int]
"""Committed offset per (topic, partition), as one poll saw them."""


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
    exclude_persistent_lag: bool = False
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

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> KafkaTrigger:
        """A trigger from a ScaledObject's ``metadata`` strings, with KEDA's defaults and
        parsing (integers as JSON numbers, booleans as Go's ``strconv.ParseBool``)."""
        topic = metadata.get("topic", "").strip()
        if not topic:
            raise ValueError("trigger metadata has no topic; the model reads one topic per trigger")
        policy = metadata.get("offsetResetPolicy", "latest").strip() or "latest"
        if policy not in ("earliest", "latest"):
            raise ValueError(f"offsetResetPolicy must be latest or earliest, not {policy!r}")
        limitation = metadata.get("partitionLimitation", "").strip()
        return cls(
            topic=topic,
            lag_threshold=_metadata_int(metadata, "lagThreshold", 10),
            activation_lag_threshold=_metadata_int(metadata, "activationLagThreshold", 0),
            offset_reset_policy="earliest" if policy == "earliest" else "latest",
            allow_idle_consumers=_metadata_bool(metadata, "allowIdleConsumers"),
            limit_to_partitions_with_lag=_metadata_bool(metadata, "limitToPartitionsWithLag"),
            ensure_even_distribution_of_partitions=_metadata_bool(
                metadata, "ensureEvenDistributionOfPartitions"
            ),
            scale_to_zero_on_invalid_offset=_metadata_bool(metadata, "scaleToZeroOnInvalidOffset"),
            exclude_persistent_lag=_metadata_bool(metadata, "excludePersistentLag"),
            partition_limitation=_partition_limitation(limitation) if limitation else None,
        )


_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def _metadata_bool(metadata: Mapping[str, str], key: str) -> bool:
    raw = metadata.get(key, "").strip()
    if not raw:
        return False
    if raw not in _GO_BOOLS:
        raise ValueError(f"{key}={raw!r} is not a boolean (true or false)")
    return _GO_BOOLS[raw]


def _metadata_int(metadata: Mapping[str, str], key: str, default: int) -> int:
    raw = metadata.get(key, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}={raw!r} is not a whole number")
    return value


def _partition_limitation(text: str) -> frozenset[int]:
    """``"0,2-4"`` -> {0, 2, 3, 4}, as KEDA's ``parsePartitionLimitation`` reads it."""
    partitions: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        bounds = [b.strip() for b in part.split("-")] if "-" in part else [part]
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError(f"invalid partitionLimitation {part!r} (use e.g. 0,2-4)")
        partitions.update(range(int(bounds[0]), int(bounds[-1]) + 1))
    return frozenset(partitions)


@dataclass(frozen=True)
class ScalingPolicy:
    """The parts of a ScaledObject that decide the replica count."""

    triggers: tuple[KafkaTrigger, ...]
    min_replicas: int = 0
    max_replicas: int = KEDA_DEFAULT_MAX_REPLICAS
    tolerance_up: float = HPA_TOLERANCE
    tolerance_down: float = HPA_TOLERANCE

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

    @classmethod
    def from_scaled_object(cls, manifest: Mapping[str, Any]) -> ScalingPolicy:
        """The policy of a ``keda.sh/v1alpha1`` ScaledObject manifest (kafka triggers only)."""
        if manifest.get("kind") != "ScaledObject":
            raise ValueError(f"expected a ScaledObject, got kind {manifest.get('kind')!r}")
        spec = manifest.get("spec") or {}
        triggers = []
        for index, trigger in enumerate(spec.get("triggers") or []):
            if trigger.get("type") != "kafka":
                raise ValueError(f"trigger {index} has type {trigger.get('type')!r}, not kafka")
            metadata = {str(k): str(v) for k, v in (trigger.get("metadata") or {}).items()}
            triggers.append(KafkaTrigger.from_metadata(metadata))
        behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get(
            "behavior"
        ) or {}
        return cls(
            tuple(triggers),
            min_replicas=int(spec.get("minReplicaCount", 0)),
            max_replicas=int(spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS)),
            tolerance_up=_tolerance(behavior, "scaleUp"),
            tolerance_down=_tolerance(behavior, "scaleDown"),
        )


def _tolerance(behavior: Mapping[str, Any], direction: str) -> float:
    value = (behavior.get(direction) or {}).get("tolerance")
    return HPA_TOLERANCE if value is None else float(value)


@dataclass(frozen=True)
class TriggerReading:
    """What KEDA reports for one trigger, and what the HPA makes of it."""

    topic: str
    partitions: int
    partitions_with_lag: int
    lag: int
    """Summed partition lag, as KEDA computes it (before exclusions and the cap)."""
    metric: int
    """The value KEDA hands the HPA (after ``excludePersistentLag`` and the partition cap)."""
    lag_threshold: int
    active: bool
    replicas: int
    """What the HPA asks for from this metric alone: ``ceil(metric / lagThreshold)``, or the
    current count when that is within the tolerance."""
    capped: bool
    """The partition cap lowered the metric."""
    excluded: int = 0
    """Lag left out as persistent (``excludePersistentLag``)."""


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    """The replica count the ScaledObject would settle on."""
    active: bool
    """Any trigger above its activation threshold."""
    triggers: tuple[TriggerReading, ...]
    reason: str
    limited_by: LimitedBy = "metric"
    notes: tuple[str, ...] = field(default=())


def partition_lag(row: LagRow, trigger: KafkaTrigger) -> int:
    """One partition's lag exactly as KEDA's ``getLagForPartition`` reports it."""
    if row.committed is None or row.committed < 0:
        if trigger.scale_to_zero_on_invalid_offset:
            return 0
        # ``latest``: KEDA cannot know the backlog, so it reports 1 to get one consumer going.
        return 1 if trigger.offset_reset_policy == "latest" else row.end_offset
    return row.end_offset - row.committed


def committed_offsets(rows: Iterable[LagRow]) -> dict[tuple[str, int], int]:
    """The offsets a poll leaves behind for the next one's ``excludePersistentLag``."""
    return {
        (row.topic, row.partition): row.committed
        for row in rows
        if row.committed is not None and row.committed >= 0
    }


def _is_persistent(row: LagRow, previous: CommittedOffsets | None) -> bool:
    """A committed partition whose offset has not moved since the previous poll."""
    if previous is None or row.committed is None or row.committed < 0:
        return False
    return previous.get((row.topic, row.partition)) == row.committed


def _factors(number: int) -> list[int]:
    return [candidate for candidate in range(1, number + 1) if number % candidate == 0]


def read_trigger(
    rows: Iterable[LagRow],
    trigger: KafkaTrigger,
    *,
    previous: CommittedOffsets | None = None,
) -> TriggerReading:
    """KEDA's ``getTotalLag`` + activity for one trigger over the rows of its topic."""
    mine = [
        row
        for row in rows
        if row.topic == trigger.topic
        and (trigger.partition_limitation is None or row.partition in trigger.partition_limitation)
    ]
    lags = [partition_lag(row, trigger) for row in mine]
    with_persistent = sum(lags)
    if trigger.exclude_persistent_lag:
        lags = [
            0 if _is_persistent(row, previous) else lag for row, lag in zip(mine, lags, strict=True)
        ]
    total = sum(lags)
    partitions = len(mine)
    with_lag = sum(1 for lag in lags if lag > 0)
    threshold = trigger.lag_threshold
    metric = total
    capped = False
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
            capped = True
    # KEDA hands the HPA a quantity, and a negative one becomes zero.
    metric = max(metric, 0)
    return TriggerReading(
        topic=trigger.topic,
        partitions=partitions,
        partitions_with_lag=with_lag,
        lag=with_persistent,
        metric=metric,
        lag_threshold=threshold,
        active=with_persistent > trigger.activation_lag_threshold,
        replicas=math.ceil(metric / threshold),
        capped=capped,
        excluded=with_persistent - total,
    )


def hpa_replicas(
    metric: int, threshold: int, current: int | None, *, up: float, down: float
) -> int:
    """The HPA's count for one AverageValue metric (``GetExternalPerPodMetricReplicas``)."""
    if current:
        ratio = metric / (threshold * current)
        if (1.0 - down) <= ratio <= (1.0 + up):
            return current
    return math.ceil(metric / threshold)


def desired_replicas(
    rows: Iterable[LagRow],
    policy: ScalingPolicy,
    *,
    current_replicas: int | None = None,
    previous: CommittedOffsets | None = None,
) -> ScalingDecision:
    """The replica count ``policy`` would ask for given the lag ``rows``.

    ``current_replicas``: None gives the HPA's target with no current count to be tolerant
    around; 0 is what KEDA does from zero (activation, then the HPA from that count); a
    positive count enables the HPA's tolerance. ``previous``: the previous poll's
    ``committed_offsets`` for ``excludePersistentLag``.
    """
    rows = list(rows)
    readings = [read_trigger(rows, trigger, previous=previous) for trigger in policy.triggers]
    active = any(reading.active for reading in readings)
    notes = tuple(
        f"{r.topic}: lag {r.lag} capped to {r.metric} ({r.partitions} partitions)"
        for r in readings
        if r.capped
    ) + tuple(
        f"{r.topic}: {r.excluded} of lag {r.lag} left out as persistent"
        for r in readings
        if r.excluded
    )
    # The count the HPA computes from: from zero, what KEDA activates to.
    current = current_replicas
    if current == 0:
        current = max(policy.min_replicas, 1)
    up, down = policy.tolerance_up, policy.tolerance_down
    readings = [
        replace(r, replicas=hpa_replicas(r.metric, r.lag_threshold, current, up=up, down=down))
        for r in readings
    ]
    if not active and (current_replicas == 0 or policy.min_replicas == 0):
        if policy.min_replicas > 0:  # KEDA raises an idle target to minReplicaCount
            reason = f"raised to minReplicaCount {policy.min_replicas}"
            return ScalingDecision(
                policy.min_replicas, False, tuple(readings), reason, "min", notes
            )
        reason = "no trigger above its activation threshold"
        return ScalingDecision(0, False, tuple(readings), reason, "inactive", notes)
    wanted = max(reading.replicas for reading in readings)
    untolerant = max(math.ceil(r.metric / r.lag_threshold) for r in readings)
    limited_by: LimitedBy = "tolerance" if wanted != untolerant else "metric"
    floor = max(policy.min_replicas, 1)
    replicas = min(max(wanted, floor), policy.max_replicas)
    if replicas > wanted:
        limited_by = "min"
    elif replicas < wanted:
        limited_by = "max"
    reason = {
        "metric": f"largest trigger asks for {wanted}",
        "tolerance": f"within the HPA's tolerance of {current}",
        "min": f"raised to minReplicaCount {floor}" if policy.min_replicas else "at least 1",
        "max": f"capped at maxReplicaCount {policy.max_replicas} (asked for {wanted})",
    }[limited_by]
    return ScalingDecision(replicas, active, tuple(readings), reason, limited_by, notes)


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
