"""The replica count KEDA would ask for, checked against the kafka scaler's documented rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.core.lag import PartitionLag
from services.core.scaling import (
    KafkaTrigger,
    ScalingPolicy,
    committed_offsets,
    desired_replicas,
    partition_lag,
    read_trigger,
    scaling_table,
)

TOPIC = "kt.tasks.sleep"


@dataclass(frozen=True)
class Row:
    topic: str
    partition: int
    end_offset: int
    committed: int | None


def rows(*lags: int, topic: str = TOPIC) -> list[Row]:
    """One partition per lag, committed at offset 100."""
    return [Row(topic, index, 100 + lag, 100) for index, lag in enumerate(lags)]


def policy(threshold: int = 10, *, min_replicas: int = 0, max_replicas: int = 100, **kw: bool):
    return ScalingPolicy(
        (KafkaTrigger(TOPIC, lag_threshold=threshold, **kw),), min_replicas, max_replicas
    )


def test_replicas_are_total_lag_over_threshold_rounded_up() -> None:
    assert desired_replicas(rows(11, 0, 0, 0), policy()).replicas == 2
    assert desired_replicas(rows(10, 10, 0, 0), policy()).replicas == 2
    assert desired_replicas(rows(7, 7, 7, 0), policy()).replicas == 3


def test_lag_is_capped_at_the_partition_count() -> None:
    decision = desired_replicas(rows(100, 100, 100, 100), policy())
    assert decision.replicas == 4
    assert decision.triggers[0].metric == 40
    assert decision.triggers[0].capped
    assert scaling_table(decision)[1][0][4] == "40 (capped)"


def test_the_cap_uses_integer_division_like_keda() -> None:
    # 45 // 10 = 4 is not above 4 partitions, so KEDA leaves 45 and the HPA asks for 5.
    decision = desired_replicas(rows(45, 0, 0, 0), policy())
    assert decision.triggers[0].metric == 45
    assert decision.replicas == 5
    # maxReplicaCount at the partition count (what infra enforces) is what keeps it at 4.
    assert desired_replicas(rows(45, 0, 0, 0), policy(max_replicas=4)).replicas == 4


def test_allow_idle_consumers_lifts_the_cap() -> None:
    assert desired_replicas(rows(100, 100), policy(allow_idle_consumers=True)).replicas == 20


def test_limit_to_partitions_with_lag_caps_at_those_partitions() -> None:
    decision = desired_replicas(rows(500, 0, 0, 0), policy(limit_to_partitions_with_lag=True))
    assert decision.replicas == 1
    assert decision.triggers[0].partitions_with_lag == 1


def test_even_distribution_rounds_up_to_a_factor_of_the_partition_count() -> None:
    six = rows(25, 0, 0, 0, 0, 0)  # 25 lag -> 3 replicas, but 6 partitions split 1/2/3/6
    trigger = KafkaTrigger(TOPIC, lag_threshold=10, ensure_even_distribution_of_partitions=True)
    assert read_trigger(six, trigger).replicas == 3
    five = rows(41, 0, 0, 0, 0, 0)  # 5 -> next factor 6
    assert read_trigger(five, trigger).replicas == 6


def test_never_committed_partitions_follow_the_offset_reset_policy() -> None:
    fresh = Row(TOPIC, 0, end_offset=250, committed=None)
    assert partition_lag(fresh, KafkaTrigger(TOPIC, offset_reset_policy="earliest")) == 250
    assert partition_lag(fresh, KafkaTrigger(TOPIC, offset_reset_policy="latest")) == 1
    quiet = KafkaTrigger(
        TOPIC, offset_reset_policy="earliest", scale_to_zero_on_invalid_offset=True
    )
    assert partition_lag(fresh, quiet) == 0


def test_scale_to_zero_only_when_no_trigger_is_active() -> None:
    idle = desired_replicas(rows(0, 0, 0, 0), policy(min_replicas=0))
    assert (idle.replicas, idle.active, idle.limited_by) == (0, False, "inactive")
    # Some lag but not above activation: still zero.
    gated = ScalingPolicy((KafkaTrigger(TOPIC, activation_lag_threshold=5),), 0, 10)
    assert desired_replicas(rows(3, 0), gated).replicas == 0
    assert desired_replicas(rows(6, 0), gated).replicas == 1
    # With minReplicaCount the HPA keeps the floor.
    assert desired_replicas(rows(0, 0), policy(min_replicas=2)).replicas == 2


def test_min_and_max_replicas_clamp() -> None:
    decision = desired_replicas(rows(100, 100, 100, 100), policy(max_replicas=3))
    assert (decision.replicas, decision.limited_by) == (3, "max")
    assert desired_replicas(rows(1), policy(min_replicas=2)).limited_by == "min"


def test_the_largest_trigger_wins() -> None:
    retry = KafkaTrigger("kt.retry", lag_threshold=30)
    both = ScalingPolicy.uniform(
        [TOPIC], lag_threshold=50, min_replicas=1, max_replicas=12, extra=[retry]
    )
    readings = rows(60, 0, 0, 0) + rows(40, 40, 40, 0, topic="kt.retry")
    decision = desired_replicas(readings, both)
    assert [r.replicas for r in decision.triggers] == [2, 4]
    assert decision.replicas == 4


def test_hpa_tolerance_keeps_the_current_count() -> None:
    # 4 replicas wanted 42 / (10 x 4) = 1.05: inside 10 %, stays at 4; raw target would be 5.
    assert desired_replicas(rows(42, 0, 0, 0, 0, 0), policy()).replicas == 5
    held = desired_replicas(rows(42, 0, 0, 0, 0, 0), policy(), current_replicas=4)
    assert (held.replicas, held.limited_by) == (4, "tolerance")


def test_the_tolerance_band_includes_its_edges_like_the_hpa() -> None:
    # kube-controller-manager keeps the count while 0.9 <= ratio <= 1.1 (both ends included).
    # abs(1 - 1.1) is 0.10000000000000009 in floating point, so testing the distance from 1
    # (what this model did before KEDA's check caught it) scales 1 replica to 2 at lag 11.
    at_edge = desired_replicas(rows(11), policy(), current_replicas=1)
    assert (at_edge.replicas, at_edge.limited_by) == (1, "tolerance")
    assert desired_replicas(rows(12), policy(), current_replicas=1).replicas == 2
    idle = policy(allow_idle_consumers=True)
    assert desired_replicas(rows(90), idle, current_replicas=10).replicas == 10
    assert desired_replicas(rows(89), idle, current_replicas=10).replicas == 9


def test_from_zero_keda_activates_then_the_hpa_takes_over() -> None:
    # KEDA scales an active target from 0 to max(minReplicaCount, 1); the HPA then computes
    # from that count: lag 11 is within the tolerance of 1, lag 25 is not.
    assert desired_replicas(rows(11), policy(), current_replicas=0).replicas == 1
    assert desired_replicas(rows(7, 6, 6, 6), policy(), current_replicas=0).replicas == 3
    assert desired_replicas(rows(0), policy(min_replicas=2), current_replicas=0).replicas == 2


def test_persistent_lag_is_left_out_of_the_metric_but_still_activates() -> None:
    trigger = KafkaTrigger(TOPIC, exclude_persistent_lag=True)
    stuck = rows(10, 10)
    first = read_trigger(stuck, trigger)
    assert (first.metric, first.active) == (20, True)
    previous = committed_offsets(stuck)
    again = read_trigger(stuck, trigger, previous=previous)
    assert (again.metric, again.active, again.excluded) == (0, True, 20)
    moved = [Row(TOPIC, 0, 110, 104), Row(TOPIC, 1, 110, 100)]
    assert read_trigger(moved, trigger, previous=previous).metric == 6


def test_a_policy_is_read_from_a_scaled_object_with_kedas_defaults() -> None:
    manifest = {
        "kind": "ScaledObject",
        "spec": {
            "minReplicaCount": 0,
            "maxReplicaCount": 6,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"tolerance": "0.05"}}}
            },
            "triggers": [
                {"type": "kafka", "metadata": {"topic": "a", "lagThreshold": "50"}},
                {
                    "type": "kafka",
                    "metadata": {
                        "topic": "b",
                        "offsetResetPolicy": "earliest",
                        "allowIdleConsumers": "True",
                        "partitionLimitation": "0, 2-3",
                    },
                },
            ],
        },
    }
    read = ScalingPolicy.from_scaled_object(manifest)
    assert (read.min_replicas, read.max_replicas) == (0, 6)
    assert (read.tolerance_up, read.tolerance_down) == (0.05, 0.1)
    first, second = read.triggers
    assert (first.lag_threshold, first.offset_reset_policy) == (50, "latest")
    assert (second.lag_threshold, second.allow_idle_consumers) == (10, True)
    assert second.partition_limitation == frozenset({0, 2, 3})


def test_trigger_metadata_that_kedas_parser_refuses_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lagThreshold='5\.5' is not a whole number"):
        KafkaTrigger.from_metadata({"topic": "a", "lagThreshold": "5.5"})
    with pytest.raises(ValueError, match="allowIdleConsumers='yes' is not a boolean"):
        KafkaTrigger.from_metadata({"topic": "a", "allowIdleConsumers": "yes"})
    with pytest.raises(ValueError, match="offsetResetPolicy must be latest or earliest"):
        KafkaTrigger.from_metadata({"topic": "a", "offsetResetPolicy": "oldest"})


def test_partition_limitation_reads_only_the_listed_partitions() -> None:
    trigger = KafkaTrigger(TOPIC, partition_limitation=frozenset({0}))
    assert read_trigger(rows(5, 50), trigger).lag == 5


def test_rows_from_the_lag_reader_fit() -> None:
    lag_rows = [PartitionLag(TOPIC, p, end_offset=30, committed=None, lag=30) for p in range(4)]
    assert desired_replicas(lag_rows, policy(offset_reset_policy="earliest")).replicas == 4


def test_invalid_trigger_metadata_is_refused_like_keda_does() -> None:
    with pytest.raises(ValueError, match="lagThreshold"):
        KafkaTrigger(TOPIC, lag_threshold=0)
    with pytest.raises(ValueError, match="cannot both"):
        KafkaTrigger(TOPIC, allow_idle_consumers=True, limit_to_partitions_with_lag=True)
    with pytest.raises(ValueError, match="minReplicaCount"):
        ScalingPolicy((KafkaTrigger(TOPIC),), 5, 2)
