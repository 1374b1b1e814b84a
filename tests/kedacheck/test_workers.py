"""KEDA's own kafka scaler on the real services: with the workers stopped a backlog makes it
ask for more replicas (the partition cap and the retry topic's trigger included); as workers
start and drain it the metric falls; idle, no trigger is active and a ScaledObject with
``minReplicaCount: 0`` goes back to zero. Every reading also agrees with the model."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from devstack.stack import StackState
from kedacheck.probe import Expected, Reading, probing
from kedacheck.stacks import stack_scaled_object
from services.core import topics
from services.core.models import ScheduledRetry, TaskMessage, utcnow
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from tests.conftest import StartApps
from tests.helpers import submit, wait_status
from tests.kedacheck.conftest import ScalerFor

pytestmark = pytest.mark.integration

PARTITIONS = 4
THRESHOLD = 10
RETRY_THRESHOLD = 5
BACKLOG = 60
"""Sleeping tasks: lag 60 // 10 = 6 exceeds the 4 partitions, so KEDA caps it at 40."""
RETRIES = 12
WORKERS = 2


async def leave_retries_behind(settings: Settings, count: int) -> None:
    """Retry messages on the retry topic, as a worker leaves them when it stops with retries
    waiting (their tasks are gone from Redis, so the next worker drops them when it reads)."""
    publisher = TaskPublisher(settings)
    try:
        for _ in range(count):
            message = TaskMessage(id=uuid.uuid4(), task="flaky", payload={})
            retry = ScheduledRetry(message=message, due_at=utcnow() - timedelta(1), attempt=1)
            await publisher.publish(
                topics.retry_topic(settings.namespace), retry, key=str(message.id)
            )
    finally:
        await publisher.stop()


async def test_keda_asks_for_workers_for_a_backlog_follows_the_drain_and_deactivates_when_idle(
    backends: StackState,
    namespace: str,
    settings: Settings,
    start_apps: StartApps,
    keda_scaler: ScalerFor,
) -> None:
    env = {"KT_TOPIC_PARTITIONS": str(PARTITIONS), "KT_WORKER_CONCURRENCY": "4"}
    apps = start_apps(namespace, workers=0, env=env)  # the API declares the topics
    # The dev stack's ScaledObject for this test's topics, scaled down to fit them.
    overrides = {
        "taskNamespace": namespace,
        "topicPartitions": PARTITIONS,
        # The stack refuses 0 (a worker must run to queue delayed tasks and fire schedules);
        # the ScaledObject is then set to scale to zero below, which is KEDA's case under test.
        "workerMinReplicas": 1,
        "workerMaxReplicas": PARTITIONS,
        "lagThreshold": THRESHOLD,
        "retryLagThreshold": RETRY_THRESHOLD,
    }
    bootstrap = backends.bootstrap_servers
    scaled = await asyncio.to_thread(stack_scaled_object, "dev", bootstrap, overrides)
    scaled.manifest["spec"]["minReplicaCount"] = 0
    sleep, retry = settings.task_topic("sleep"), topics.retry_topic(namespace)
    readings: list[Reading] = []

    async with probing(
        keda_scaler(scaled.chart_version), scaled.manifest, bootstrap, readings
    ) as p:
        await p.read(
            "workers stopped, nothing waiting",
            current=0,
            expect=Expected({sleep: 0, retry: 0}, active=False, replicas=0),
        )
        await leave_retries_behind(settings, RETRIES)
        # From 0 KEDA activates 1 replica; the HPA then wants ceil(12 / 5) = 3.
        await p.read(
            f"{RETRIES} retries waiting",
            current=0,
            expect=Expected({sleep: 0, retry: RETRIES}, active=True, replicas=3),
        )
        async with apps.client() as client:
            submitted = await asyncio.gather(
                *(submit(client, "sleep", {"seconds": 1, "steps": 1}) for _ in range(BACKLOG))
            )
        backlog = await p.read(
            f"{BACKLOG} tasks waiting",
            current=0,
            expect=Expected(
                {sleep: PARTITIONS * THRESHOLD, retry: RETRIES}, active=True, replicas=PARTITIONS
            ),
        )
        assert backlog.figures.trigger(sleep).lag == BACKLOG  # the cap, not a smaller backlog

        for _ in range(WORKERS):
            apps.add_worker(wait=False)
        draining: list[Reading] = []
        async with asyncio.timeout(120):
            while True:
                reading = await p.read("workers draining", current=WORKERS)
                draining.append(reading)
                if not reading.figures.keda_active:
                    break
                await asyncio.sleep(0.25)  # KEDA polls on an interval too
        await p.read(
            "drained",
            current=WORKERS,
            expect=Expected({sleep: 0, retry: 0}, active=False, replicas=0),
        )

    assert [problem for r in readings for problem in r.problems()] == []
    lags = [r.figures.trigger(sleep).lag for r in [backlog, *draining]]
    assert lags == sorted(lags, reverse=True), "the backlog only shrinks while workers drain it"
    metrics = [r.figures.trigger(sleep).keda_metric_milli for r in draining]
    assert any(0 < (m or 0) < PARTITIONS * THRESHOLD * 1000 for m in metrics), (
        f"no reading caught the metric on its way down: {metrics}"
    )
    assert metrics[-1] == 0
    async with apps.client() as client:
        for task in submitted:
            await wait_status(client, task["id"], "COMPLETE", within=30)
