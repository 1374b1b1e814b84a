"""What the check puts KEDA's scaler through, on a real Kafka.

``stack_readings``: a stack's own ScaledObject (as infra renders it, pointed at the local
Kafka) through a sequence of states of its topics and consumer group: idle, a backlog the
group never committed (the workers' first start), the retry topic, the partition cap and the
integer-division band just below it, the HPA's tolerance band from both sides, records
deleted by retention, drained. Each reading compares KEDA with the model.

``setting_readings``: one trigger at a time with the settings the stacks do not use, each
reading also checked against the figure worked out by hand from KEDA's source.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedacheck.kafka import LagSetter, spread
from kedacheck.probe import Expected, Reading, probing
from kedacheck.stacks import StackScaledObject

CASE_PARTITIONS = 4
CASE_THRESHOLD = 10


async def stack_readings(
    binary: Path, stack: StackScaledObject, bootstrap: str, readings: list[Reading]
) -> None:
    manifest = stack.manifest
    spec = manifest["spec"]
    triggers = spec["triggers"]
    # infra lists the task topics first and the retry topic last (config.consumed_topics).
    first, second, retry = (str(triggers[i]["metadata"]["topic"]) for i in (0, 1, -1))
    threshold = int(triggers[0]["metadata"]["lagThreshold"])
    partitions = stack.topic_partitions[first]
    retry_threshold = int(triggers[-1]["metadata"]["lagThreshold"])
    lowest = max(int(spec.get("minReplicaCount", 0)), 1)
    group = str(triggers[0]["metadata"]["consumerGroup"])

    async with LagSetter(bootstrap) as kafka:
        await kafka.fresh_topics(stack.topic_partitions)
        try:
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await probe.read("idle, group never committed")
                await kafka.produce(first, spread(2 * partitions * threshold, partitions))
                await probe.read("backlog 2 x partitions x lagThreshold, never committed")
                await probe.read("the same from 0 replicas", current=0)
                await kafka.produce(retry, spread(2 * retry_threshold + 1, partitions))
                await probe.read("+ retry backlog 2 x retryLagThreshold + 1")
                await kafka.leave_lag(group, retry, [0] * partitions)
                band = partitions * threshold + threshold // 2
                await kafka.leave_lag(group, first, spread(band, partitions))
                await probe.read("lag partitions x T + T/2 (below the cap)")
                # The HPA's tolerance: exactly 1.1 x target x current is inside the band.
                edge = math.floor(1.1 * threshold * lowest)
                await kafka.leave_lag(group, first, spread(edge, partitions))
                await probe.read(f"lag 1.1 x T x {lowest} at {lowest}", current=lowest)
                await kafka.leave_lag(group, first, spread(edge + 1, partitions))
                await probe.read("one more", current=lowest)
                many = int(spec["maxReplicaCount"])
                if many >= 10:  # only from 10 replicas can the lower band keep a count
                    low = math.ceil(0.9 * threshold * 10)
                    await kafka.leave_lag(group, first, spread(low, partitions))
                    await probe.read("lag 0.9 x T x 10 at 10", current=10)
                    await kafka.leave_lag(group, first, spread(low - 1, partitions))
                    await probe.read("one less", current=10)
                await kafka.produce(second, [5] * partitions)
                await kafka.delete_before(second, [3] * partitions)
                await probe.read(f"{second} never committed, records below 3 deleted")
                ends = {t: [0] * n for t, n in stack.topic_partitions.items()}
                for topic, zeros in ends.items():
                    await kafka.leave_lag(group, topic, zeros)
                await probe.read("drained", current=lowest)
        finally:
            await kafka.delete_topics(list(stack.topic_partitions))


def _case_manifest(
    template: Mapping[str, Any],
    topic: str,
    group: str,
    metadata: Mapping[str, str],
    *,
    min_replicas: int = 0,
    max_replicas: int = 100,
) -> dict[str, Any]:
    """``template`` (a rendered ScaledObject) with one trigger on ``topic``: the template's
    first trigger's metadata with ``metadata`` laid over it."""
    manifest = copy.deepcopy(dict(template))
    base = dict(manifest["spec"]["triggers"][0]["metadata"])
    base.update(
        topic=topic, consumerGroup=group, lagThreshold=str(CASE_THRESHOLD), **dict(metadata)
    )
    manifest["spec"]["triggers"] = [{"type": "kafka", "metadata": base}]
    manifest["spec"]["minReplicaCount"] = min_replicas
    manifest["spec"]["maxReplicaCount"] = max_replicas
    return manifest


async def setting_readings(
    binary: Path,
    template: Mapping[str, Any],
    bootstrap: str,
    namespace: str,
    readings: list[Reading],
) -> None:
    """One case per trigger setting, on topics of ``namespace`` with 4 partitions and a
    lagThreshold of 10."""
    p = CASE_PARTITIONS
    names = [
        "latest",
        "zero-invalid",
        "idle",
        "with-lag",
        "even",
        "activation",
        "limitation",
        "persistent",
        "hpa",
    ]
    topics = {f"{namespace}.case-{name}": p for name in names}

    def case(name: str) -> tuple[str, str]:
        return f"{namespace}.case-{name}", f"{namespace}-case-{name}"

    async with LagSetter(bootstrap) as kafka:
        await kafka.fresh_topics(topics)
        try:
            # Never committed, offsetResetPolicy latest: 1 per partition, even an empty one.
            topic, group = case("latest")
            await kafka.produce(topic, [5, 5, 5, 0])
            for policy, metric in (("latest", 4), ("earliest", 15)):
                manifest = _case_manifest(template, topic, group, {"offsetResetPolicy": policy})
                async with probing(binary, manifest, bootstrap, readings) as probe:
                    await probe.read(
                        f"never committed, offsetResetPolicy {policy}",
                        expect=Expected(
                            {topic: metric}, active=True, replicas=math.ceil(metric / 10)
                        ),
                    )

            # scaleToZeroOnInvalidOffset: a never-committed partition counts 0 under both.
            topic, group = case("zero-invalid")
            await kafka.produce(topic, [5, 5, 5, 5])
            for policy in ("latest", "earliest"):
                manifest = _case_manifest(
                    template,
                    topic,
                    group,
                    {"offsetResetPolicy": policy, "scaleToZeroOnInvalidOffset": "true"},
                )
                async with probing(binary, manifest, bootstrap, readings) as probe:
                    await probe.read(
                        f"never committed, scaleToZeroOnInvalidOffset, {policy}",
                        expect=Expected({topic: 0}, active=False, replicas=0),
                    )

            # allowIdleConsumers: no partition cap (100 lag on 4 partitions asks for 10).
            topic, group = case("idle")
            await kafka.produce(topic, [25] * p)
            await kafka.leave_lag(group, topic, [25] * p)
            for idle, metric in (("false", 40), ("true", 100)):
                manifest = _case_manifest(template, topic, group, {"allowIdleConsumers": idle})
                async with probing(binary, manifest, bootstrap, readings) as probe:
                    await probe.read(
                        f"lag 100 on 4 partitions, allowIdleConsumers {idle}",
                        expect=Expected({topic: metric}, active=True, replicas=metric // 10),
                    )
            # The cap's integer division: 45 // 10 = 4 is not above 4 partitions.
            await kafka.leave_lag(group, topic, [25, 20, 0, 0])
            manifest = _case_manifest(template, topic, group, {})
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await probe.read(
                    "lag 45 on 4 partitions (cap band)",
                    expect=Expected({topic: 45}, active=True, replicas=5),
                )

            # limitToPartitionsWithLag: all lag on one partition caps at one replica.
            topic, group = case("with-lag")
            await kafka.produce(topic, [100, 0, 0, 0])
            await kafka.leave_lag(group, topic, [100, 0, 0, 0])
            for limit, metric in (("false", 40), ("true", 10)):
                manifest = _case_manifest(
                    template, topic, group, {"limitToPartitionsWithLag": limit}
                )
                async with probing(binary, manifest, bootstrap, readings) as probe:
                    await probe.read(
                        f"lag 100 on partition 0 only, limitToPartitionsWithLag {limit}",
                        expect=Expected({topic: metric}, active=True, replicas=metric // 10),
                    )

            # ensureEvenDistributionOfPartitions: 25 lag wants 3 replicas; 4 partitions split
            # evenly over 1, 2 or 4 consumers, so 4. Idle, it still reports one replica's worth.
            topic, group = case("even")
            await kafka.produce(topic, [10, 5, 5, 5])
            even = {"ensureEvenDistributionOfPartitions": "true"}
            manifest = _case_manifest(template, topic, group, even)
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await kafka.leave_lag(group, topic, [10, 5, 5, 5])
                await probe.read(
                    "lag 25, ensureEvenDistributionOfPartitions",
                    expect=Expected({topic: 40}, active=True, replicas=4),
                )
                await kafka.leave_lag(group, topic, [0] * p)
                await probe.read(
                    "idle, ensureEvenDistributionOfPartitions",
                    current=1,
                    expect=Expected({topic: 10}, active=False, replicas=0),
                )

            # activationLagThreshold 5: lag 3 stays inactive (at zero), lag 6 activates.
            topic, group = case("activation")
            await kafka.produce(topic, [2, 2, 2, 0])
            manifest = _case_manifest(template, topic, group, {"activationLagThreshold": "5"})
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await kafka.leave_lag(group, topic, [1, 1, 1, 0])
                await probe.read(
                    "lag 3, activationLagThreshold 5, from 0",
                    current=0,
                    expect=Expected({topic: 3}, active=False, replicas=0),
                )
                await kafka.leave_lag(group, topic, [2, 2, 2, 0])
                await probe.read(
                    "lag 6, activationLagThreshold 5, from 0",
                    current=0,
                    expect=Expected({topic: 6}, active=True, replicas=1),
                )

            # partitionLimitation: partitions 1 and 3 are not read.
            topic, group = case("limitation")
            await kafka.produce(topic, [7, 30, 8, 30])
            await kafka.leave_lag(group, topic, [7, 30, 8, 30])
            manifest = _case_manifest(template, topic, group, {"partitionLimitation": "0,2"})
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await probe.read(
                    "partitionLimitation 0,2",
                    expect=Expected({topic: 15}, active=True, replicas=2),
                )

            # excludePersistentLag: a committed offset that has not moved since the previous
            # poll is left out of the metric, but still counts for activity.
            topic, group = case("persistent")
            await kafka.produce(topic, [10] * p)
            await kafka.leave_lag(group, topic, [10] * p)
            manifest = _case_manifest(template, topic, group, {"excludePersistentLag": "true"})
            async with probing(binary, manifest, bootstrap, readings) as probe:
                await probe.read(
                    "excludePersistentLag, 1st poll",
                    expect=Expected({topic: 40}, active=True, replicas=4),
                )
                await probe.read(
                    "excludePersistentLag, no progress",
                    expect=Expected({topic: 0}, active=True, replicas=1),
                )
                await kafka.leave_lag(group, topic, [4, 10, 10, 10])
                await probe.read(
                    "excludePersistentLag, partition 0 moved",
                    expect=Expected({topic: 4}, active=True, replicas=1),
                )

            # The HPA: its tolerance band is inclusive at both ends, and from zero KEDA
            # activates first. (No partition cap here, to reach 10 replicas on 4 partitions.)
            topic, group = case("hpa")
            await kafka.produce(topic, [25] * p)
            manifest = _case_manifest(
                template, topic, group, {"allowIdleConsumers": "true"}, max_replicas=12
            )
            async with probing(binary, manifest, bootstrap, readings) as probe:
                steps = ((11, 1, 1), (12, 1, 2), (11, 0, 1), (90, 10, 10), (89, 10, 9))
                for lag, current, replicas in steps:
                    await kafka.leave_lag(group, topic, spread(lag, p))
                    at = f"from {current}" if current == 0 else f"at {current}"
                    await probe.read(
                        f"lag {lag} {at} replica(s)",
                        current=current,
                        expect=Expected({topic: lag}, active=True, replicas=replicas),
                    )
                await kafka.leave_lag(group, topic, spread(25, p))
                await probe.read(
                    "lag 25 from 0 replicas (KEDA activates to 1)",
                    current=0,
                    expect=Expected({topic: 25}, active=True, replicas=3),
                )
        finally:
            await kafka.delete_topics(list(topics))
