"""Every Prometheus metric kafka-tasks exports, in one place (prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS_SUBMITTED = Counter("kt_tasks_submitted", "Tasks accepted by the API.", ["task"])
TASKS_STARTED = Counter("kt_tasks_started", "Task attempts started by workers.", ["task"])
TASKS_COMPLETED = Counter("kt_tasks_completed", "Tasks that ended COMPLETE.", ["task"])
TASKS_FAILED = Counter("kt_tasks_failed", "Tasks that ended FAILURE.", ["task"])
TASKS_RETRIED = Counter("kt_tasks_retried", "Failed attempts scheduled for a retry.", ["task"])
TASKS_CANCELLED = Counter(
    "kt_tasks_cancelled", "Tasks cancelled while queued or running.", ["task"]
)
WORKFLOW_STEPS_REDRIVEN = Counter(
    "kt_workflow_steps_redriven",
    "Workflow steps the reaper submitted: their workflow was left in the outbox (the worker "
    "that made them due died, or lost Kafka, before submitting them).",
)
TASKS_REQUEUED = Counter(
    "kt_tasks_requeued",
    "Abandoned tasks the reaper put back on their topic, by why (see store.Reclaimed).",
    ["task", "reason"],
)
WORKER_ERRORS = Counter(
    "kt_worker_errors",
    "Errors no handler expected (worker bugs), by where; each is logged with its traceback.",
    ["where"],
)
TASK_DURATION = Histogram(
    "kt_task_duration_seconds",
    "Wall time of one attempt, by outcome.",
    ["task", "outcome"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900),
)
TASKS_IN_FLIGHT = Gauge("kt_tasks_in_flight", "Tasks this worker is running now.")
CONSUMER_LAG = Gauge(
    "kt_consumer_lag",
    "Messages between this worker's position and the partition's end (per assigned partition).",
    ["topic", "partition"],
)
HTTP_REQUEST_DURATION = Histogram(
    "kt_http_request_duration_seconds",
    "API request latency by route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
TASKS_EXPIRED = Counter(
    "kt_tasks_expired", "Tasks that reached their expiry before a worker started them.", ["task"]
)
TASKS_HELD = Counter(
    "kt_tasks_held",
    "Tasks held back to be queued later, by why (eta, rate_limit, concurrency).",
    ["task", "reason"],
)
TASKS_RELEASED = Counter(
    "kt_tasks_released", "Held-back tasks queued by the timer loop once due.", ["task"]
)
DELAY_LATENESS = Histogram(
    "kt_timer_lateness_seconds",
    "How long after its due time a held-back task was put on its topic.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
SCHEDULE_TICKS = Counter(
    "kt_schedule_ticks",
    "Periodic schedule ticks, by outcome (fired, skipped).",
    ["schedule", "outcome"],
)
