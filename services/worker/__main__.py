"""`python -m services.worker`: wait for Kafka and declare topics, then run the faust worker
until SIGTERM."""

import asyncio
import sys

import mode.loop

from services.core import policy
from services.core.errors import ConfigurationError
from services.core.kafka_topics import wait_for_kafka
from services.core.logs import configure
from services.core.priorities import Priority
from services.core.publisher import TaskPublisher
from services.core.redis_client import connect, verify_credentials
from services.core.settings import Settings
from services.core.store import TaskStore
from services.core.submission import Submitter
from services.core.workflow_engine import WorkflowEngine
from services.tasks import catalog
from services.worker.app import create_worker_app
from services.worker.dispatcher import Dispatcher
from services.worker.leases import LeaseKeeper
from services.worker.process import Worker, run
from services.worker.reaper import Reaper
from services.worker.retries import RetryScheduler
from services.worker.runner import TaskRunner
from services.worker.scheduler import PeriodicScheduler
from services.worker.timers import TimerLoop

# Waiting retries cost a sleeping coroutine each; this only bounds memory.
MAX_WAITING_RETRIES = 10_000


def main() -> None:
    # uvloop, set before any loop exists (mode's documented switch): a third of the worker's
    # CPU on a stream of short tasks went to the stdlib event loop itself (py-spy).
    mode.loop.use("uvloop")
    settings = Settings()
    configure(level=settings.log_level, json=settings.log_json)
    try:
        asyncio.run(check_redis_credentials(settings))
        asyncio.run(wait_for_kafka(settings, catalog))
    except ConfigurationError as refused:
        print(f"kafka-tasks worker refuses to start: {refused}", file=sys.stderr)
        raise SystemExit(2) from None
    redis = connect(settings)
    store = TaskStore.from_settings(redis, settings)
    publisher = TaskPublisher(settings)
    leases = LeaseKeeper(store)
    submitter = Submitter(store, publisher, catalog, settings)
    workflows = WorkflowEngine(store, submitter)
    runner = TaskRunner(store, catalog, publisher, leases, settings=settings, workflows=workflows)
    priorities = {
        settings.task_topic(spec.name, priority): priority
        for spec in catalog.specs()
        if spec.prioritized
        for priority in Priority
    }
    tasks = Dispatcher(
        runner.run,
        concurrency=settings.worker_concurrency,
        track_in_flight=True,
        priorities=priorities,
        weights=settings.priority_weights,
    )
    retry_scheduler = RetryScheduler(store, publisher, settings)
    retries = Dispatcher(
        retry_scheduler.run, concurrency=MAX_WAITING_RETRIES, track_in_flight=False
    )
    reaper = Reaper(store, publisher, catalog, settings, leases, workflows)
    timers = TimerLoop(store, publisher, settings)
    scheduler = PeriodicScheduler(
        store.schedule_book(),
        submitter,
        policy.schedules(catalog, settings),
        settings,
    )
    app = create_worker_app(
        settings, catalog, store, publisher, tasks, retries, leases, reaper, timers, scheduler
    )
    # redirect_stdouts=False: our JSON log lines are printed as they are, not re-logged.
    run(Worker(app, loglevel=settings.log_level.lower(), quiet=True, redirect_stdouts=False))


async def check_redis_credentials(settings: Settings) -> None:
    # A client of its own: the worker's client must be made in faust's event loop.
    redis = connect(settings)
    try:
        await verify_credentials(redis)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    main()
