"""Locust users that submit kafka-tasks tasks and follow each one to its end.

Each iteration a user picks a task type (weighted, ``LOADTEST_MIX``), submits it, and follows
it either by polling ``GET /tasks/<id>`` or by reading ``GET /tasks/<id>/events`` (SSE),
weighted by ``LOADTEST_FOLLOW``. Besides Locust's HTTP entries, every task adds one entry of
type ``TASK`` (named ``<task> via poll|sse``) whose response time is the end-to-end latency,
submit to terminal state. A task that ends in another state than its type should, or does not
end within ``--task-timeout``, is a failure of that entry.

Against a deployed stack: ``KAFKA_TASKS_URL`` (or ``--host``) and ``KAFKA_TASKS_API_KEY``.
Load shape: ``LOADTEST_SHAPE`` = ``steady`` (default), ``ramp`` or ``spike`` (to 1,000 users);
``none`` uses Locust's plain -u/-r/-t. The shapes read -u, -r and -t too.
At the end, ``--max-fail-ratio`` and ``--max-p99-ms`` (p99 of all TASK entries) decide the
exit code.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # locust imports by file path

from loadtest import shapes, thresholds
from loadtest.profiles import parse_weights

TERMINAL = frozenset({"COMPLETE", "FAILURE", "CANCELLED"})

TASK_TYPES: dict[str, tuple[dict[str, Any], str]] = {
    # name: (payload, the terminal state it must reach)
    "noop": ({"echo": "loadtest"}, "COMPLETE"),
    "sleep": ({"seconds": 0.5, "steps": 2}, "COMPLETE"),
    "fail": ({"message": "failing on purpose (load test)"}, "FAILURE"),
    "flaky": ({"fail_times": 1}, "COMPLETE"),
}


MIX = parse_weights(
    os.environ.get("LOADTEST_MIX", "noop:5,sleep:3,fail:1,flaky:1"), set(TASK_TYPES)
)
FOLLOW = parse_weights(os.environ.get("LOADTEST_FOLLOW", "poll:1,sse:1"), {"poll", "sse"})
POLL_SECONDS = float(os.environ.get("LOADTEST_POLL_SECONDS", "0.25"))


class TaskNeverFinishedError(Exception):
    pass


class UnexpectedStateError(Exception):
    pass


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--max-fail-ratio",
        type=float,
        env_var="LOADTEST_MAX_FAIL_RATIO",
        default=None,
        help="exit non-zero when failures / requests (all entries) is above this",
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        env_var="LOADTEST_MAX_P99_MS",
        default=None,
        help="exit non-zero when the p99 of the TASK entries is above this",
    )
    parser.add_argument(
        "--task-timeout",
        type=float,
        env_var="LOADTEST_TASK_TIMEOUT",
        default=30.0,
        help="seconds a task may take to reach a terminal state before it counts as failed",
    )


class TaskUser(HttpUser):
    host = os.environ.get("KAFKA_TASKS_URL", "http://127.0.0.1:8000")
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        key = os.environ.get("KAFKA_TASKS_API_KEY")
        if key:
            self.client.headers["X-API-Key"] = key

    @task
    def submit_and_follow(self) -> None:
        name = random.choices(list(MIX), weights=list(MIX.values()))[0]
        mode = random.choices(list(FOLLOW), weights=list(FOLLOW.values()))[0]
        payload, expected = TASK_TYPES[name]
        started = time.perf_counter()
        with self.client.post(
            "/tasks", json={"task": name, "payload": payload}, name="/tasks", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")
                return
            task_id = response.json()["id"]
        options = self.environment.parsed_options
        deadline = started + (options.task_timeout if options else 30.0)
        error: Exception | None = None
        try:
            state = (
                self._poll(task_id, deadline) if mode == "poll" else self._stream(task_id, deadline)
            )
            if state != expected:
                error = UnexpectedStateError(f"{name} ended {state}, expected {expected}")
        except TaskNeverFinishedError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="TASK",
            name=f"{name} via {mode}",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={"task_id": task_id},
        )

    def _poll(self, task_id: str, deadline: float) -> str:
        while True:
            with self.client.get(
                f"/tasks/{task_id}", name="/tasks/[id]", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"status answered {response.status_code}")
                else:
                    status = str(response.json()["status"])
                    if status in TERMINAL:
                        return status
            if time.perf_counter() >= deadline:
                raise TaskNeverFinishedError(f"{task_id} not finished in time (polling)")
            # Polling is by definition a timed wait; the SSE mode is the event-driven one.
            time.sleep(min(POLL_SECONDS, max(deadline - time.perf_counter(), 0)))

    def _stream(self, task_id: str, deadline: float) -> str:
        remaining = max(deadline - time.perf_counter(), 0.1)
        with self.client.get(
            f"/tasks/{task_id}/events",
            name="/tasks/[id]/events",
            stream=True,
            timeout=remaining,
            headers={"Accept": "text/event-stream"},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"events answered {response.status_code}")
                raise TaskNeverFinishedError(f"{task_id}: events stream refused")
            event = ""
            try:
                for raw in response.iter_lines(decode_unicode=True):
                    line = raw or ""
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event == "state":
                        status = str(json.loads(line[5:])["status"])
                        if status in TERMINAL:
                            return status
                    if time.perf_counter() >= deadline:
                        break
            except Exception as exc:  # a read timeout is the "never finished" case
                raise TaskNeverFinishedError(
                    f"{task_id}: stream ended without a terminal state"
                ) from exc
            raise TaskNeverFinishedError(f"{task_id}: stream ended without a terminal state")


_shape_name = os.environ.get("LOADTEST_SHAPE", "steady")
if _shape_name != "none":
    if _shape_name not in shapes.SHAPES:
        raise SystemExit(f"LOADTEST_SHAPE={_shape_name!r}: choose one of {sorted(shapes.SHAPES)}")
    # Locust runs the shape class it finds in this module; exactly one is bound here.
    Shape = shapes.SHAPES[_shape_name]


@events.quitting.add_listener
def _verdict(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    total = environment.stats.total
    task_entries = [e for (_, method), e in environment.stats.entries.items() if method == "TASK"]
    verdict = thresholds.judge(
        requests=total.num_requests,
        failures=total.num_failures,
        task_latency=thresholds.merge(e.response_times for e in task_entries),
        max_fail_ratio=getattr(options, "max_fail_ratio", None),
        max_p99_ms=getattr(options, "max_p99_ms", None),
    )
    for line in verdict.lines:
        print(f"loadtest: {line}", flush=True)
    # Our verdict replaces Locust's default (exit 1 on any single failed request), so that
    # --max-fail-ratio decides.
    environment.process_exit_code = 0 if verdict.ok else 1
