"""Start and stop what the benchmarks measure, on their own devstack home.

Everything runs under ``build/bench/.stack`` (its own Kafka, Redis, logs and state), so a
benchmark never touches the stack of ``make up`` or the test suite. Every process started here
is recorded in that home's ``state.json``: ``python -m devstack --home build/bench/.stack down``
stops whatever a crashed run left behind.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from devstack import stack
from devstack.processes import alive, free_port, port_open, spawn, stop, wait_for

REPO_ROOT = stack.REPO_ROOT
BENCH_HOME = REPO_ROOT / "build" / "bench" / ".stack"
CELERY_REDIS_DB = 1
"""The anchor uses its own Redis database so its keys never mix with kafka-tasks'."""


def ensure_backends(home: Path = BENCH_HOME) -> stack.StackState:
    """Kafka and Redis for the benchmarks, started with no data (a pair left running by
    ``--keep-stack`` is reused as it is); reuses the jar cache of the default home.

    Kept data would skew every later run: each run adds a namespace's topics (52 partitions
    with the demo catalog) and records, and a broker with thousands of idle partitions costs
    more CPU per task (one checkout's bench Kafka had grown to 2,059 partition directories)."""
    stack.share_jar_cache(home)
    state, _ = stack.ensure_backends(home, keep_data=False)
    return state


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Apps:
    """Processes started for one system under test; ``close`` stops them all."""

    state: stack.StackState
    urls: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, app: stack.AppProcess) -> stack.AppProcess:
        self.names.append(app.name)
        return app

    def close(self) -> None:
        stack.stop_apps(self.state, self.names, grace_seconds=15)
        self.names.clear()


def worker_env(state: stack.StackState, name: str, extra: dict[str, str]) -> dict[str, str]:
    # faust keeps a data directory per app; keep it out of the repository root.
    datadir = Path(state.home) / "worker-data" / name
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    return {"F_DATADIR": str(datadir), "KT_LOG_LEVEL": "WARNING", **extra}


def start_kafka_tasks(
    state: stack.StackState,
    namespace: str,
    *,
    apis: int = 1,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Apps:
    """API processes and workers for ``namespace``; returns when every one is ready."""
    apps = Apps(state)
    extra = {"KT_LOG_LEVEL": "WARNING", **(env or {})}
    started = []
    try:
        for index in range(apis):
            name = f"{namespace}-api-{index}"
            api = apps.add(stack.start_api(state, namespace=namespace, name=name, extra_env=extra))
            apps.urls.append(api.url)
            started.append(api)
        for index in range(workers):
            started.append(add_worker(apps, namespace, index, extra))
        for app in started:
            stack.wait_app_ready(app, timeout=90)
    except BaseException:
        apps.close()  # leave nothing half-started behind
        raise
    return apps


def add_worker(
    apps: Apps, namespace: str, index: int, env: dict[str, str] | None = None
) -> stack.AppProcess:
    name = f"{namespace}-worker-{index}"
    return apps.add(
        stack.start_worker(
            apps.state,
            namespace=namespace,
            name=name,
            extra_env=worker_env(apps.state, name, env or {}),
        )
    )


def _register(state: stack.StackState, name: str, pid: int, port: int, log: Path) -> None:
    app = stack.AppProcess(name=name, pid=pid, port=port, log=str(log), namespace="bench")
    state.apps = [a for a in state.apps if a.name != name] + [app]
    stack.save(state)


def _ready_or_dead(url: str, pid: int) -> bool:
    return _ready(url) or not alive(pid)


def _spawn(
    state: stack.StackState, name: str, argv: list[str], port: int, env: dict[str, str]
) -> tuple[int, Path]:
    log = Path(state.home) / "logs" / f"{name}.log"
    pid = spawn(argv, log_file=log, env=env, cwd=REPO_ROOT)
    _register(state, name, pid, port, log)
    return pid, log


def celery_redis_url(state: stack.StackState) -> str:
    base = state.redis_url.rsplit("/", 1)[0]
    return f"{base}/{CELERY_REDIS_DB}"


def start_celery(
    state: stack.StackState,
    *,
    apis: int = 1,
    workers: int = 1,
    concurrency: int = 64,
    pool: str = "threads",
) -> Apps:
    """The anchor: uvicorn + FastAPI processes and Celery workers (see bench.anchor)."""
    apps = Apps(state)
    try:
        _start_celery(apps, state, apis, workers, concurrency, pool)
    except BaseException:
        apps.close()
        raise
    return apps


def _start_celery(
    apps: Apps, state: stack.StackState, apis: int, workers: int, concurrency: int, pool: str
) -> None:
    env = {"BENCH_CELERY_BROKER": celery_redis_url(state)}
    pending: list[tuple[str, int, Path]] = []
    for index in range(apis):
        name = f"celery-api-{index}"
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bench.anchor:api", "--port", str(port)]
        argv += ["--log-level", "warning", "--no-access-log"]
        pid, log = _spawn(state, name, argv, port, env)
        apps.names.append(name)
        apps.urls.append(f"http://127.0.0.1:{port}")
        pending.append((f"http://127.0.0.1:{port}/readyz", pid, log))
    for index in range(workers):
        name = f"celery-worker-{index}"
        argv = [sys.executable, "-m", "celery", "-A", "bench.anchor:celery_app", "worker"]
        argv += ["-P", pool, "-c", str(concurrency), "-Q", "anchor", "-n", f"{name}@%h"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["--loglevel", "WARNING"]
        pid, log = _spawn(state, name, argv, 0, env)
        apps.names.append(name)
        pending.append(("", pid, log))
    for url, pid, log in pending:
        if url and not wait_for(partial(_ready_or_dead, url, pid), timeout=60):
            raise RuntimeError(f"celery API not ready, see {log}")
        if not alive(pid):
            raise RuntimeError(f"celery process exited, see {log}")
    _celery_round_trip(env["BENCH_CELERY_BROKER"], workers)


def _celery_round_trip(url: str, workers: int) -> None:
    """Ready means a task went through broker, worker and result backend (a worker logs no
    "ready" line at WARNING level, and a log line would prove less anyway)."""
    from celery import Celery

    client = Celery("probe", broker=url, backend=url)
    try:
        results = [
            client.send_task("noop", kwargs={"echo": "ready"}, queue="anchor")
            for _ in range(workers * 4)
        ]
        for result in results:
            result.get(timeout=60)
    finally:
        client.close()


@contextmanager
def trivial_server(state: stack.StackState) -> Iterator[str]:
    """The driver's ceiling reference (see bench.trivial)."""
    port = free_port()
    pid, _ = _spawn(state, "trivial", [sys.executable, "-m", "bench.trivial", str(port)], port, {})
    try:
        if not wait_for(lambda: port_open(port), timeout=20):
            raise RuntimeError("trivial server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(pid)
        state.apps = [a for a in state.apps if a.name != "trivial"]
        stack.save(state)


def unique_namespace(prefix: str) -> str:
    return f"{prefix}{int(time.time()) % 1_000_000:06d}"


def stop_backends(state: stack.StackState) -> None:
    """Everything in the bench home: apps left over, Kafka, Redis."""
    stack.stop_all(state)
