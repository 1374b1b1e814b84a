"""The faust app: one agent per task topic, feeding the dispatcher; health pages for probes."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from services.core import contract, topics
from services.core.catalog import Catalog
from services.core.settings import Settings
from services.core.store import TaskStore
from services.worker.dispatcher import Dispatcher


def create_worker_app(
    settings: Settings, catalog: Catalog, store: TaskStore, dispatcher: Dispatcher
) -> faust.App:
    app = faust.App(
        topics.worker_app_id(settings.namespace),
        version=topics.WORKER_APP_VERSION,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        autodiscover=False,
        store="memory://",
        # Start from the oldest message a new consumer group has not seen; KEDA's
        # offsetResetPolicy must say the same (see infra).
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        broker_commit_interval=0.5,
        producer_acks=-1,
        web_bind=settings.worker_web_bind,
        web_port=settings.worker_web_port,
        web_in_thread=False,
    )
    state: dict[str, bool] = {"assigned": False}

    for spec in catalog.specs():
        topic = app.topic(
            settings.task_topic(spec.name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

        async def consume(stream: Any) -> None:
            # noack(): the dispatcher acknowledges each message itself, in offset order, once
            # its outcome is stored (faust would otherwise ack as soon as it is read).
            async for event in stream.noack().events():
                await dispatcher.dispatch(event)

        app.agent(topic, name=f"run-{spec.name}")(consume)

    async def on_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        dispatcher.revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_rebalanced(app: faust.App, **_: Any) -> None:
        state["assigned"] = True

    # mode's signal types want a `signal` keyword in the signature; faust passes it in **_.
    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(on_rebalanced)  # type: ignore[arg-type]

    @app.page(contract.WORKER_LIVENESS_PATH)
    class Liveness(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "in_flight": dispatcher.in_flight})

    @app.page(contract.WORKER_READINESS_PATH)
    class Readiness(View):
        async def get(self, request: Request) -> Response:
            checks = {"redis": await store.ping(), "kafka_group_joined": state["assigned"]}
            ready = all(checks.values())
            return self.json(
                {"status": "ready" if ready else "unavailable", "checks": checks},
                status=200 if ready else 503,
            )

    return app
