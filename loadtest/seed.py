"""The proof of concept's own scenario, for kafka-tasks and the Celery anchor alike (same
routes): each user submits a ``sleep`` of 0.5-2 s, polls ``GET /tasks/<id>`` every second until
it ends, then waits 1-2 s. Run by ``make bench`` against both systems (``bench/seed.py``):
1,000 users spawned at 100/s for 90 s.

Every task adds one entry of type ``TASK`` (``sleep via poll``) whose response time is the
end-to-end latency, submit to the poll that saw it finished (so to the second).
"""

from __future__ import annotations

import os
import random
import time

from locust import HttpUser, between, task

TERMINAL = frozenset({"COMPLETE", "FAILURE", "CANCELLED"})
POLL_SECONDS = 1.0
GIVE_UP_SECONDS = 120.0


class TaskNeverFinishedError(Exception):
    pass


class UnexpectedStateError(Exception):
    pass


class SeedUser(HttpUser):
    wait_time = between(1, 2)

    def on_start(self) -> None:
        key = os.environ.get("KAFKA_TASKS_API_KEY")
        if key:
            self.client.headers["X-API-Key"] = key

    @task
    def submit_and_poll(self) -> None:
        payload = {"seconds": round(random.uniform(0.5, 2.0), 3), "steps": 1}
        started = time.perf_counter()
        with self.client.post(
            "/tasks", json={"task": "sleep", "payload": payload}, name="/tasks", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"submit answered {response.status_code}: {response.text[:200]}")
                return
            task_id = response.json()["id"]
        error: Exception | None = None
        try:
            state = self._poll(task_id, started + GIVE_UP_SECONDS)
            if state != "COMPLETE":
                error = UnexpectedStateError(f"sleep ended {state}")
        except TaskNeverFinishedError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="TASK",
            name="sleep via poll",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={"task_id": task_id},
        )

    def _poll(self, task_id: str, deadline: float) -> str:
        while time.perf_counter() < deadline:
            # The scenario is a client that polls once a second: a timed wait by definition.
            time.sleep(POLL_SECONDS)
            with self.client.get(
                f"/tasks/{task_id}", name="/tasks/[id]", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"status answered {response.status_code}")
                    continue
                status = str(response.json()["status"])
                if status in TERMINAL:
                    return status
        raise TaskNeverFinishedError(f"{task_id} not finished in {GIVE_UP_SECONDS:.0f} s")
