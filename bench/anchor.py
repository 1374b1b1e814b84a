"""The anchor: what users would otherwise pick. FastAPI in front of Celery, Redis as broker and
result backend, with the same HTTP shape as kafka-tasks (``POST /tasks``, ``GET /tasks/<id>``).

Configured as Celery's "Optimizing" guide and worker docs recommend for many short I/O-bound
tasks: one worker process (like the kafka-tasks worker) with a thread pool as wide as the
kafka-tasks worker's concurrency (64). Measured on the 2-core machine, the thread pool beat
gevent (x 64: 104 noop/s burst completion, 4.5 ms worker CPU per task), prefork (x 2: a 50 ms
task caps at 40/s) and solo; ``--celery-pool`` tries the others. Prefetch is kept at 4 per
slot for short tasks, early acknowledgement (Celery's default; ``acks_late`` would
cost a round trip per task), no task events, no gossip/mingle/heartbeat (set on the command
line), JSON serialisation, a shared Redis connection pool.

Run the API with ``uvicorn bench.anchor:api`` and the worker with
``celery -A bench.anchor:celery_app worker -P threads -c 64 --without-gossip --without-mingle
--without-heartbeat``. ``BENCH_CELERY_BROKER`` / ``BENCH_CELERY_BACKEND`` point them at Redis.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/1")
BACKEND = os.environ.get("BENCH_CELERY_BACKEND", BROKER)

celery_app = Celery("anchor", broker=BROKER, backend=BACKEND)
celery_app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Short tasks: let each worker reserve a batch instead of one at a time (docs: prefetch
    # limits). 4 x concurrency is Celery's default multiplier; stated here on purpose.
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    task_track_started=False,
    result_expires=3600,
    broker_pool_limit=64,
    redis_max_connections=128,
    # Without this the API's first apply_async pays for broker connection setup.
    broker_connection_retry_on_startup=True,
    task_default_queue="anchor",
)


@celery_app.task(name="noop")
def noop(echo: Any = None) -> Any:
    return echo


@celery_app.task(name="sleep")
def sleep(seconds: float = 0.05, steps: int = 1) -> dict[str, float]:
    # In the thread pool (or gevent, where it is patched) this blocks only its own slot, like
    # asyncio.sleep in the kafka-tasks worker.
    for _ in range(max(steps, 1)):
        time.sleep(seconds / max(steps, 1))
    return {"slept_seconds": seconds}


TASKS = {"noop": noop, "sleep": sleep}


class Submission(BaseModel):
    task: str
    payload: dict[str, Any] = {}


api = FastAPI(title="celery anchor")


@api.post("/tasks", status_code=202)
async def submit(body: Submission) -> JSONResponse:
    task = TASKS.get(body.task)
    if task is None:
        raise HTTPException(404, f"unknown task {body.task}")
    # apply_async is one LPUSH on a pooled connection (well under a millisecond); calling it
    # on the event loop is cheaper than a thread-pool hop per request.
    result = task.apply_async(kwargs=body.payload)
    return JSONResponse(
        {"id": result.id, "task": body.task, "status": "PENDING"},
        status_code=202,
        headers={"Location": f"/tasks/{result.id}"},
    )


@api.get("/tasks/{task_id}")
async def status(task_id: str) -> dict[str, Any]:
    result = AsyncResult(task_id, app=celery_app)
    state = result.state
    return {
        "id": task_id,
        "status": {"SUCCESS": "COMPLETE"}.get(state, state),
        "result": result.result if state == "SUCCESS" else None,
    }


@api.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}
