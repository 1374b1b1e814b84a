"""KEDA's figures next to the model's (``services.core.scaling``) for one reading of the lag.

Both read the same offsets: the model's rows are read just before and just after KEDA's poll,
and the pair counts only when nothing moved in between (a draining worker commits every half
second, so a moving reading is simply taken again). Then every figure must be equal: per
trigger the metric handed to the HPA, the activity and the replicas the HPA derives from it,
and for the ScaledObject the activity, the replica count and which rule settled it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError

from kedacheck.errors import KedaCheckError
from kedacheck.scaler import KedaPoll, KedaScaledObject, KedaScaler
from services.core.lag import OffsetReader, PartitionLag
from services.core.scaling import (
    CommittedOffsets,
    ScalingDecision,
    ScalingPolicy,
    desired_replicas,
)

READ_ATTEMPTS = 40
RETRY_PAUSE_SECONDS = 0.05


@dataclass(frozen=True)
class TriggerFigures:
    topic: str
    lag: int
    """The summed lag the model counted (before exclusions and the cap)."""
    keda_metric_milli: int | None
    model_metric: int
    keda_active: bool | None
    model_active: bool
    keda_replicas: int | None
    model_replicas: int
    error: str | None = None

    @property
    def keda_metric(self) -> str:
        if self.keda_metric_milli is None:
            return "error"
        whole, milli = divmod(self.keda_metric_milli, 1000)
        return str(whole) if not milli else f"{self.keda_metric_milli / 1000:g}"

    def differences(self) -> list[str]:
        if self.error:
            return [f"{self.topic}: KEDA's scaler failed: {self.error}"]
        found = []
        if self.keda_metric_milli != self.model_metric * 1000:
            found.append(f"{self.topic}: metric KEDA {self.keda_metric}, model {self.model_metric}")
        if self.keda_active != self.model_active:
            found.append(f"{self.topic}: active KEDA {self.keda_active}, model {self.model_active}")
        if self.keda_replicas != self.model_replicas:
            found.append(
                f"{self.topic}: replicas KEDA {self.keda_replicas}, model {self.model_replicas}"
            )
        return found


@dataclass(frozen=True)
class Figures:
    """One reading: KEDA's figures and the model's, per trigger and for the ScaledObject."""

    label: str
    current_replicas: int | None
    triggers: tuple[TriggerFigures, ...]
    keda_active: bool
    model_active: bool
    keda_replicas: int | None
    model_replicas: int
    keda_limited_by: str
    model_limited_by: str

    def differences(self) -> list[str]:
        found = [d for trigger in self.triggers for d in trigger.differences()]
        if self.keda_active != self.model_active:
            found.append(f"active: KEDA {self.keda_active}, model {self.model_active}")
        if self.keda_replicas != self.model_replicas:
            found.append(f"replicas: KEDA {self.keda_replicas}, model {self.model_replicas}")
        if self.keda_limited_by != self.model_limited_by:
            found.append(f"settled by: KEDA {self.keda_limited_by}, model {self.model_limited_by}")
        return found

    @property
    def agree(self) -> bool:
        return not self.differences()

    def trigger(self, topic: str) -> TriggerFigures:
        return next(t for t in self.triggers if t.topic == topic)


def figures(
    label: str,
    keda: KedaScaledObject,
    poll: KedaPoll,
    model: ScalingDecision,
    current_replicas: int | None,
) -> Figures:
    triggers = []
    for spec, kpoll, reading in zip(keda.triggers, poll.triggers, model.triggers, strict=True):
        triggers.append(
            TriggerFigures(
                topic=spec.topic,
                lag=reading.lag,
                keda_metric_milli=None if kpoll.error else kpoll.metric_milli,
                model_metric=reading.metric,
                keda_active=None if kpoll.error else kpoll.active,
                model_active=reading.active,
                keda_replicas=kpoll.replicas,
                model_replicas=reading.replicas,
                error=kpoll.error,
            )
        )
    return Figures(
        label=label,
        current_replicas=current_replicas,
        triggers=tuple(triggers),
        keda_active=poll.active,
        model_active=model.active,
        keda_replicas=poll.replicas,
        model_replicas=model.replicas,
        keda_limited_by=poll.limited_by,
        model_limited_by=model.limited_by,
    )


def static_differences(keda: KedaScaledObject, policy: ScalingPolicy) -> list[str]:
    """What KEDA built from the ScaledObject (HPA bounds, metric targets) against the policy
    the model reads from the same manifest."""
    found = []
    if keda.hpa_min_replicas != max(policy.min_replicas, 1):
        found.append(f"HPA minReplicas: KEDA {keda.hpa_min_replicas}, model {policy.min_replicas}")
    if keda.hpa_max_replicas != policy.max_replicas:
        found.append(f"HPA maxReplicas: KEDA {keda.hpa_max_replicas}, model {policy.max_replicas}")
    if (keda.tolerance_up, keda.tolerance_down) != (policy.tolerance_up, policy.tolerance_down):
        found.append("HPA tolerance differs")
    if len(keda.triggers) != len(policy.triggers):
        found.append(f"triggers: KEDA {len(keda.triggers)}, model {len(policy.triggers)}")
    for spec, trigger in zip(keda.triggers, policy.triggers, strict=False):
        if spec.topic != trigger.topic:
            found.append(f"trigger {spec.index}: KEDA topic {spec.topic}, model {trigger.topic}")
        if spec.target_milli != trigger.lag_threshold * 1000:
            found.append(
                f"{spec.topic}: target KEDA {spec.target}, model lagThreshold "
                f"{trigger.lag_threshold}"
            )
    return found


def consumer_group(scaled_object: Mapping[str, Any]) -> str:
    """The one consumer group every trigger reads (the model compares one group's rows)."""
    triggers = scaled_object["spec"]["triggers"]
    groups = {str(t["metadata"].get("consumerGroup", "")) for t in triggers}
    if len(groups) != 1 or "" in groups:
        raise KedaCheckError(f"expected every trigger to read one consumer group, got {groups}")
    return groups.pop()


async def read_together(
    keda: KedaScaler,
    policy: ScalingPolicy,
    lag: OffsetReader,
    group: str,
    *,
    label: str,
    current_replicas: int | None,
    previous: CommittedOffsets | None = None,
) -> tuple[Figures, list[PartitionLag]]:
    """Poll KEDA and evaluate the model on the same offsets; returns the figures and the rows
    (whose ``committed_offsets`` are the next poll's ``previous``)."""
    topics = sorted({trigger.topic for trigger in policy.triggers})
    remembers = any(trigger.exclude_persistent_lag for trigger in policy.triggers)
    why = "no reading"
    for _ in range(READ_ATTEMPTS):
        try:
            before = await lag.lag(group, topics)
            poll = await keda.poll(current_replicas)
            after = await lag.lag(group, topics)
        except KafkaError as error:  # e.g. the group's coordinator moving during a rebalance
            why = f"Kafka answered {type(error).__name__}: {error}"
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            continue
        failed = [t.error for t in poll.triggers if t.error]
        if before == after and not failed:
            decision = desired_replicas(
                after, policy, current_replicas=current_replicas, previous=previous
            )
            return figures(label, keda.scaled_object, poll, decision, current_replicas), after
        if remembers:
            # KEDA's scaler has now remembered offsets the model never saw.
            raise KedaCheckError(
                f"{label}: offsets moved or a trigger failed ({failed}) during a poll with "
                "excludePersistentLag; hold them still"
            )
        why = f"KEDA's scaler failed: {failed[0]}" if failed else "offsets moved"
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
    raise KedaCheckError(f"{label}: no steady reading in {READ_ATTEMPTS} attempts ({why})")


def render_rows(checks: Sequence[Figures]) -> list[list[str]]:
    """Table rows for a report: per reading one row per trigger with lag or a metric (idle
    triggers that agree are only counted), then one for the ScaledObject."""
    rows = []
    for check in checks:
        current = "-" if check.current_replicas is None else str(check.current_replicas)
        idle = 0
        for trigger in check.triggers:
            if not (trigger.lag or trigger.model_metric or trigger.differences()):
                idle += 1
                continue
            rows.append(
                [
                    check.label,
                    current,
                    trigger.topic,
                    str(trigger.lag),
                    f"{trigger.keda_metric} / {trigger.model_metric}",
                    f"{_yes(trigger.keda_active)} / {_yes(trigger.model_active)}",
                    f"{_num(trigger.keda_replicas)} / {trigger.model_replicas}",
                    "" if not trigger.differences() else "DIFFERENT",
                ]
            )
        rows.append(
            [
                check.label,
                current,
                "ScaledObject" + (f" (+{idle} idle triggers)" if idle else ""),
                str(sum(t.lag for t in check.triggers)),
                "",
                f"{_yes(check.keda_active)} / {_yes(check.model_active)}",
                f"{_num(check.keda_replicas)} / {check.model_replicas} "
                f"({check.keda_limited_by} / {check.model_limited_by})",
                "agree" if check.agree else "DIFFERENT: " + "; ".join(check.differences()),
            ]
        )
    return rows


HEADERS = [
    "case",
    "current",
    "trigger",
    "lag",
    "metric KEDA / model",
    "active KEDA / model",
    "replicas KEDA / model",
    "",
]


def _yes(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)
