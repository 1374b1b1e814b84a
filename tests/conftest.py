"""Fixtures: the real local stack (Kafka + Redis through devstack), a namespace per test, and
the API and worker processes pointed at it.

Kafka and Redis are started once per session when they are not already running (a `make up`
stack is reused) and stopped at the end only if this session started them. A test that
cannot reach them fails: nothing here skips.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from devstack import stack
from services.core.settings import Settings
from services.core.store import TaskStore


@pytest.fixture(scope="session")
def backends() -> Iterator[stack.StackState]:
    state, started_here = stack.ensure_backends(stack.DEFAULT_HOME)
    yield state
    if started_here:
        stack.stop_all(stack.load(stack.DEFAULT_HOME))


@pytest.fixture
def namespace() -> str:
    """A fresh namespace: its own topics, consumer group and Redis keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(backends: stack.StackState, namespace: str) -> Settings:
    return Settings(
        namespace=namespace,
        kafka_bootstrap_servers=backends.bootstrap_servers,
        redis_url=backends.redis_url,
    )


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis_client: Redis, settings: Settings) -> TaskStore:
    return TaskStore(redis_client, namespace=settings.namespace, result_ttl_seconds=60)


@dataclass
class AppStack:
    """The API and one or more workers of one namespace, as separate processes."""

    state: stack.StackState
    namespace: str
    api: stack.AppProcess
    workers: list[stack.AppProcess]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api.url, timeout=30)


StartApps = Callable[..., AppStack]


@pytest.fixture
def start_apps(backends: stack.StackState) -> Iterator[StartApps]:
    """Start an API and ``workers`` workers for a namespace; all are stopped after the test."""
    started: list[stack.AppProcess] = []

    def start(namespace: str, *, workers: int = 1, env: dict[str, str] | None = None) -> AppStack:
        tag = namespace
        api = stack.start_api(backends, namespace=namespace, name=f"{tag}-api", extra_env=env)
        started.append(api)
        worker_processes = []
        for index in range(workers):
            worker = stack.start_worker(
                backends, namespace=namespace, name=f"{tag}-worker-{index}", extra_env=env
            )
            started.append(worker)
            worker_processes.append(worker)
        for process in [api, *worker_processes]:
            stack.wait_app_ready(process)
        return AppStack(backends, namespace, api, worker_processes)

    yield start
    for process in started:
        stack.stop_app(backends, process.name, grace_seconds=10)
