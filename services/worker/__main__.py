"""`python -m services.worker`: declare topics, then run the faust worker until SIGTERM."""

import asyncio

import faust
from redis.asyncio import Redis

from services.core.kafka_topics import ensure_topics
from services.core.logs import configure
from services.core.settings import Settings
from services.core.store import TaskStore
from services.tasks import catalog
from services.worker.app import create_worker_app
from services.worker.dispatcher import Dispatcher
from services.worker.runner import TaskRunner


def main() -> None:
    settings = Settings()
    configure(level=settings.log_level, json=settings.log_json)
    if settings.declare_topics:
        asyncio.run(ensure_topics(settings, catalog))
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    store = TaskStore(
        redis, namespace=settings.namespace, result_ttl_seconds=settings.result_ttl_seconds
    )
    runner = TaskRunner(store, catalog, threads=settings.worker_threads)
    dispatcher = Dispatcher(runner, concurrency=settings.worker_concurrency)
    app = create_worker_app(settings, catalog, store, dispatcher)
    faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
