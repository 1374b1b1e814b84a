"""The faust app: one agent per task topic (a prioritised task has one per priority) and one
for the retry topic, each feeding a dispatcher; timers for lease renewal, the reaper, the
timer loop of held-back tasks, the periodic scheduler and the lag gauge; pages for probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.core import contract, metrics, policy, topics
from services.core.catalog import Catalog
from services.core.errors import BackendUnavailableError
from services.core.kafka_security import client_options, faust_credentials
from services.core.lag import group_lag
from services.core.logs import get_logger
from services.core.publisher import TaskPublisher
from services.core.settings import Settings
from services.core.store import TaskStore
from services.worker.dispatcher import Dispatcher
from services.worker.leases import LeaseKeeper
from services.worker.reaper import Reaper
from services.worker.scheduler import PeriodicScheduler
from services.worker.timers import TimerLoop

log = get_logger(__name__)

LAG_INTERVAL_SECONDS = 10.0
METADATA_MAX_AGE_MS = 30_000


async def never_crash(name: str, work: Callable[[], Awaitable[object]]) -> None:
    """Run one tick of a background job; an outage is logged and waited out, a bug logged
    loudly and counted, and neither reaches mode (which would stop the worker)."""
    try:
        await work()
    except BackendUnavailableError as error:
        log.warning(
            f"{name} skipped: backend unavailable", backend=error.backend, reason=error.reason
        )
    except Exception:
        metrics.WORKER_ERRORS.labels(name).inc()
        log.exception(f"{name} failed")


def create_worker_app(
    settings: Settings,
    catalog: Catalog,
    store: TaskStore,
    publisher: TaskPublisher,
    tasks: Dispatcher,
    retries: Dispatcher,
    leases: LeaseKeeper,
    reaper: Reaper,
    timers: TimerLoop,
    scheduler: PeriodicScheduler,
) -> faust.App:
    app = faust.App(
        topics.worker_app_id(settings.namespace),
        version=topics.WORKER_APP_VERSION,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        # Topics are declared before faust starts (or by Strimzi): its own declaration would
        # need the Create right on the cluster, which the worker's Kafka user does not have.
        topic_allow_declare=False,
        autodiscover=False,
        store="memory://",
        # Start from the oldest message a new consumer group has not seen; KEDA's
        # offsetResetPolicy must say the same (see infra).
        consumer_auto_offset_reset=contract.WORKER_AUTO_OFFSET_RESET,
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        broker_commit_interval=0.5,
        # A topic that appears after the worker joined (declared late, or back after the whole
        # cluster was down) is picked up at the next metadata refresh: 30 s, not 5 minutes.
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        broker_session_timeout=settings.worker_session_timeout_seconds,
        # The other workers learn of a rebalance (a worker left or joined) from their next
        # heartbeat's answer; every second keeps their partitions' pause short. Kafka's rule
        # of at most a third of the session timeout still holds.
        broker_heartbeat_interval=min(settings.worker_session_timeout_seconds / 3, 1.0),
        # The dispatchers decide what is acknowledged; faust must not wait for messages they
        # deliberately leave unacknowledged (waiting retries, messages refused at shutdown).
        stream_wait_empty=False,
        producer_acks=-1,
        web_bind=settings.worker_web_bind,
        web_port=settings.worker_web_port,
        web_in_thread=False,
    )
    state: dict[str, bool] = {"assigned": False}

    def raw_topic(name: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def agent_for(dispatcher: Dispatcher) -> Any:
        async def consume(stream: Any) -> None:
            # noack(): the dispatcher acknowledges each message itself, in offset order, once
            # it is handled (faust would otherwise ack as soon as it is read).
            async for event in stream.noack().events():
                await dispatcher.dispatch(event)

        return consume

    # One agent per topic: each waits for a slot on its own, so the dispatcher's weighted
    # slots choose between priorities (an agent for several topics would serve them in turn).
    for spec in catalog.specs():
        for topic in topics.task_topics(
            settings.namespace, spec.name, prioritized=spec.prioritized
        ):
            suffix = topic.removeprefix(settings.task_topic(spec.name)).replace(".", "-")
            app.agent(raw_topic(topic), name=f"run-{spec.name}{suffix}")(agent_for(tasks))
    app.agent(raw_topic(topics.retry_topic(settings.namespace)), name="retries")(agent_for(retries))

    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        state["assigned"] = False
        partitions = {(tp.topic, tp.partition) for tp in revoked}
        await tasks.revoked(partitions, grace_seconds=settings.worker_shutdown_grace_seconds)
        await retries.revoked(partitions, grace_seconds=0)

    async def on_rebalanced(app: faust.App, **_: Any) -> None:
        state["assigned"] = True

    async def on_shutdown(app: faust.App, **_: Any) -> None:
        # faust has paused fetching; finish what runs, then faust commits and exits.
        finished = await tasks.close(grace_seconds=settings.worker_shutdown_grace_seconds)
        await retries.close(grace_seconds=0)
        await reaper.close()
        log.info("worker stopped", all_tasks_finished=finished)

    # mode's signal types want a `signal` keyword in the signature; faust passes it in **_.
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(on_rebalanced)  # type: ignore[arg-type]
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]

    # mode stops the whole worker when a timer raises: every timer here keeps running through
    # outages of any length (readiness reports them) and logs what it did not expect.
    @app.timer(leases.interval_seconds)  # type: ignore[untyped-decorator]  # faust: untyped
    async def renew_leases() -> None:
        await never_crash("lease renewal", leases.renew)

    @app.timer(settings.worker_sweep_interval_seconds)  # type: ignore[untyped-decorator]  # faust: untyped
    async def reap() -> None:
        await never_crash("reaper", reaper.sweep)

    @app.timer(settings.timer_interval_seconds)  # type: ignore[untyped-decorator]  # faust: untyped
    async def release_due() -> None:
        await never_crash("timer loop", timers.tick)

    @app.timer(settings.scheduler_interval_seconds)  # type: ignore[untyped-decorator]  # faust: untyped
    async def schedule() -> None:
        await never_crash("periodic scheduler", scheduler.tick)

    task_topics = policy.all_task_topics(catalog, settings)
    security = client_options(settings)

    @app.timer(LAG_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]  # faust: untyped
    async def export_lag() -> None:
        async def read() -> None:
            rows = await group_lag(
                settings.kafka_bootstrap_servers,
                settings.consumer_group,
                task_topics,
                security=security,
            )
            for row in rows:
                metrics.CONSUMER_LAG.labels(row.topic, str(row.partition)).set(row.lag)

        await never_crash("lag gauge", read)

    @app.page(contract.WORKER_LIVENESS_PATH)
    class Liveness(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    "status": "ok",
                    "in_flight": tasks.in_flight,
                    "scheduler": {"token": scheduler.token, "leading": scheduler.leading},
                }
            )

    @app.page(contract.WORKER_READINESS_PATH)
    class Readiness(View):
        async def get(self, request: Request) -> Response:
            redis, kafka = await asyncio.gather(store.ping(), publisher.ready())
            checks = {"redis": redis, "kafka": kafka, "kafka_group_joined": state["assigned"]}
            ready = all(checks.values())
            return self.json(
                {"status": "ready" if ready else "unavailable", "checks": checks},
                status=200 if ready else 503,
            )

    @app.page(contract.WORKER_METRICS_PATH)
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # aiohttp wants the charset apart from the media type.
            media_type = CONTENT_TYPE_LATEST.split(";")[0]
            return self.bytes(generate_latest(), content_type=media_type)

    return app
