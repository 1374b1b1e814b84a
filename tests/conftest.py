"""Fixtures: the real local stack (Kafka + Redis through devstack), a namespace per test, and
the API and worker processes pointed at it.

Kafka and Redis are started once per session when they are not already running (a `make up`
stack is reused; otherwise both start fresh) and stopped at the end only if this session
started them. A test that
cannot reach them fails: nothing here skips.

Every test that reaches Redis (through ``settings``, ``redis_client``, ``store`` or
``start_apps``) runs twice: against the single Redis server (``[standalone]``) and against a
Redis Cluster of 3 masters, each with a replica (``[cluster]``), started the first time a
test needs it. ``--redis-modes=cluster`` (or ``standalone``) runs one mode only. A test that
works on the standalone server's process itself (kills, pauses, a proxy in front of it) is
marked ``standalone_redis``, and one that works on the cluster's nodes ``cluster_redis``
(``tests/system/test_cluster.py``): each runs in its one mode, whatever ``--redis-modes``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from redis.asyncio import Redis, RedisCluster

from devstack import stack
from services.core.redis_client import RedisClient
from services.core.settings import Settings
from services.core.store import TaskStore

REDIS_MODES = ("standalone", "cluster")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-modes",
        default=",".join(REDIS_MODES),
        help="the Redis modes the tests that reach Redis run against (comma-separated)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_mode" not in metafunc.fixturenames:
        return
    modes = [m for m in metafunc.config.getoption("--redis-modes").split(",") if m]
    unknown = set(modes) - set(REDIS_MODES)
    if unknown:
        raise pytest.UsageError(f"--redis-modes: unknown {sorted(unknown)}; use {REDIS_MODES}")
    if metafunc.definition.get_closest_marker("standalone_redis"):
        modes = ["standalone"]
    elif metafunc.definition.get_closest_marker("cluster_redis"):
        modes = ["cluster"]
    metafunc.parametrize("redis_mode", modes, indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_mode(request: pytest.FixtureRequest) -> str:
    """ "standalone" or "cluster": which Redis this test's settings and apps point at."""
    mode: str = request.param
    return mode


@pytest.fixture(scope="session")
def backends() -> Iterator[stack.StackState]:
    state, started_here = stack.ensure_backends(stack.DEFAULT_HOME, keep_data=False)
    yield state
    if started_here:
        stack.stop_all(stack.load(stack.DEFAULT_HOME))


@pytest.fixture(scope="session")
def redis_cluster(backends: stack.StackState) -> stack.StackState:
    """The stack with its Redis Cluster up (started fresh unless one runs already)."""
    if not backends.redis_cluster_alive():
        stack.ensure_cluster(backends, keep_data=False)
    return backends


@pytest.fixture
def redis_env(
    backends: stack.StackState, redis_mode: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    """The KT_* variables that point the services at this test's Redis."""
    if redis_mode == "cluster":
        request.getfixturevalue("redis_cluster")
    return backends.redis_env(cluster=redis_mode == "cluster")


@pytest.fixture
def namespace() -> str:
    """A fresh namespace: its own topics, consumer group and Redis keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(backends: stack.StackState, namespace: str, redis_env: dict[str, str]) -> Settings:
    return Settings(
        namespace=namespace,
        kafka_bootstrap_servers=backends.bootstrap_servers,
        redis_url=redis_env["KT_REDIS_URL"],
        redis_cluster=redis_env["KT_REDIS_CLUSTER"] == "true",
    )


def plain_client(settings: Settings) -> RedisClient:
    """A client of redis-py's own defaults for the test's Redis: the server or the cluster."""
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url)
    return Redis.from_url(settings.redis_url)


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    client = plain_client(settings)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis_client: RedisClient, settings: Settings) -> TaskStore:
    return TaskStore(redis_client, namespace=settings.namespace, result_ttl_seconds=60)


@dataclass
class AppStack:
    """The API and workers of one namespace, as separate processes."""

    state: stack.StackState
    namespace: str
    env: dict[str, str]
    api: stack.AppProcess | None
    workers: list[stack.AppProcess] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        assert self.api is not None, "this stack has no API"
        return httpx.AsyncClient(base_url=self.api.url, timeout=30, headers=self.headers)

    def add_worker(self, *, wait: bool = True) -> stack.AppProcess:
        name = f"{self.namespace}-worker-{len(self.workers)}-{uuid.uuid4().hex[:4]}"
        worker = stack.start_worker(
            self.state, namespace=self.namespace, name=name, extra_env=self.env
        )
        self.workers.append(worker)
        if wait:
            stack.wait_app_ready(worker)
        return worker


StartApps = Callable[..., AppStack]


@pytest.fixture
def start_apps(backends: stack.StackState, redis_env: dict[str, str]) -> Iterator[StartApps]:
    """Start an API and ``workers`` workers for a namespace, on this test's Redis; all are
    stopped after the test."""
    stacks: list[AppStack] = []

    def start(
        namespace: str, *, workers: int = 1, api: bool = True, env: dict[str, str] | None = None
    ) -> AppStack:
        env = {**redis_env, **(env or {})}
        api_process = (
            stack.start_api(backends, namespace=namespace, name=f"{namespace}-api", extra_env=env)
            if api
            else None
        )
        apps = AppStack(backends, namespace, env, api_process)
        stacks.append(apps)
        for _ in range(workers):
            apps.add_worker(wait=False)
        for process in [p for p in [api_process, *apps.workers] if p is not None]:
            stack.wait_app_ready(process)
        return apps

    yield start
    names = [
        process.name
        for apps in stacks
        for process in [apps.api, *apps.workers]
        if process is not None
    ]
    stack.stop_apps(backends, names, grace_seconds=10)
