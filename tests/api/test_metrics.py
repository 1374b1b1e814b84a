"""Prometheus metrics from the API and the worker."""

from __future__ import annotations

import httpx

from tests.conftest import StartApps
from tests.helpers import eventually, submit, wait_status


async def test_api_and_worker_export_task_and_request_metrics(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace)
    async with apps.client() as client:
        accepted = await submit(client, "noop", {})
        await wait_status(client, accepted["id"], "COMPLETE")
        api_metrics = (await client.get("/metrics")).text
    async with httpx.AsyncClient(base_url=apps.workers[0].url) as worker:
        worker_metrics = await eventually(
            lambda: worker.get("/metrics"),
            lambda r: "kt_consumer_lag{" in r.text,  # the lag timer has run once
            within=30,
            interval=0.5,
        )

    assert 'kt_tasks_submitted_total{task="noop"} 1.0' in api_metrics
    assert (
        'kt_http_request_duration_seconds_count{method="POST",route="/tasks",status="202"}'
        in api_metrics
    )
    assert 'kt_tasks_completed_total{task="noop"} 1.0' in worker_metrics.text
    assert (
        'kt_task_duration_seconds_count{outcome="complete",task="noop"} 1.0' in worker_metrics.text
    )
    assert f'kt_consumer_lag{{partition="0",topic="{namespace}.tasks.noop"}}' in worker_metrics.text
