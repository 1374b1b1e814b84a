"""The local stack as a whole: what runs where (``state.json``), bringing it up and down."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack import kafka, redis
from devstack.processes import (
    DevstackError,
    alive,
    bindable,
    free_port,
    spawn,
    stop,
    tail,
    wait_for,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = REPO_ROOT / ".devstack"


@dataclass
class AppProcess:
    name: str
    pid: int
    port: int
    log: str
    namespace: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class StackState:
    home: str
    kafka_nodes: list[kafka.KafkaNode] = field(default_factory=list)
    redis_server: redis.RedisServer | None = None
    apps: list[AppProcess] = field(default_factory=list)
    redis_cluster: list[redis.RedisServer] = field(default_factory=list)
    """The nodes of a Redis Cluster (``up --redis-cluster``, and the tests' cluster mode)."""
    services_use_cluster: bool = False
    """Whether the services this stack starts talk to the cluster instead of the server."""

    @property
    def bootstrap_servers(self) -> str:
        return kafka.bootstrap_servers(self.kafka_nodes)

    @property
    def redis_url(self) -> str:
        if self.redis_server is None:
            raise DevstackError("Redis is not running")
        return self.redis_server.url

    def backends_alive(self) -> bool:
        return (
            bool(self.kafka_nodes)
            and all(alive(node.pid) for node in self.kafka_nodes)
            and self.redis_server is not None
            and alive(self.redis_server.pid)
        )

    @property
    def redis_cluster_url(self) -> str:
        if not self.redis_cluster:
            raise DevstackError("no Redis Cluster runs (devstack up --redis-cluster)")
        return redis.cluster_url(self.redis_cluster)

    def redis_cluster_alive(self) -> bool:
        return bool(self.redis_cluster) and all(alive(node.pid) for node in self.redis_cluster)

    def redis_env(self, *, cluster: bool | None = None) -> dict[str, str]:
        """The KT_* variables that point a service at the server or (``cluster``) the
        cluster; by default at what ``services_use_cluster`` says."""
        if cluster if cluster is not None else self.services_use_cluster:
            return {"KT_REDIS_URL": self.redis_cluster_url, "KT_REDIS_CLUSTER": "true"}
        return {"KT_REDIS_URL": self.redis_url, "KT_REDIS_CLUSTER": "false"}

    def service_env(self, namespace: str) -> dict[str, str]:
        """The KT_* environment that points the services at this stack."""
        return {
            "KT_NAMESPACE": namespace,
            "KT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            **self.redis_env(),
        }


def state_file(home: Path) -> Path:
    return home / "state.json"


def load(home: Path = DEFAULT_HOME) -> StackState:
    path = state_file(home)
    if not path.exists():
        return StackState(home=str(home))
    raw: dict[str, Any] = json.loads(path.read_text())
    return StackState(
        home=raw["home"],
        kafka_nodes=[kafka.KafkaNode(**node) for node in raw.get("kafka_nodes", [])],
        redis_server=redis.RedisServer(**raw["redis_server"]) if raw.get("redis_server") else None,
        apps=[AppProcess(**app) for app in raw.get("apps", [])],
        redis_cluster=[redis.RedisServer(**node) for node in raw.get("redis_cluster", [])],
        services_use_cluster=bool(raw.get("services_use_cluster", False)),
    )


def save(state: StackState) -> None:
    home = Path(state.home)
    home.mkdir(parents=True, exist_ok=True)
    tmp = state_file(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(state_file(home))


def share_jar_cache(home: Path) -> None:
    """Let another home (benchmarks, chaos runs) use the default home's Kafka jars: saves a
    Maven run on machines that already ran `make up`."""
    shared = DEFAULT_HOME / "cache"
    if home != DEFAULT_HOME and shared.is_dir() and not (home / "cache").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "cache").symlink_to(shared.resolve(), target_is_directory=True)


def ensure_backends(
    home: Path = DEFAULT_HOME,
    *,
    brokers: int = 1,
    keep_data: bool = True,
    redis_cluster: bool = False,
) -> tuple[StackState, bool]:
    """Kafka and Redis up and ready; returns (state, started_here).

    A running pair is reused. A backend that died or was stopped starts again on its own data
    (Kafka keeps its log as Redis keeps its AOF), so no accepted task loses its message to a
    restart. With no data yet, another number of brokers asked for, or ``keep_data`` off
    (the test suite, whose namespaces need nothing from earlier runs and would only slow
    Kafka's start with their partitions), both start fresh together: never a fresh Kafka
    under old records.
    """
    state = load(home)
    if state.backends_alive() and len(state.kafka_nodes) == brokers:
        return state, False
    if keep_data and _restartable(state, brokers):
        for node in state.kafka_nodes:
            if not alive(node.pid):
                kafka.restart_node(home, node)
        server = state.redis_server
        assert server is not None
        if not alive(server.pid):
            # Its old port if free: nothing that knew it still runs (the apps died with the
            # backends, or are started after this), and another stack may have taken it.
            state.redis_server = redis.start(home, preferred_port=server.port)
        save(state)
    else:
        stop_all(state)
        if state.kafka_nodes or state.redis_server:
            print(f"devstack: starting Kafka ({brokers} broker(s)) and Redis afresh", flush=True)
        for data in (Path(home) / "kafka", Path(home) / "redis"):
            shutil.rmtree(data, ignore_errors=True)
        state = StackState(home=str(home))
        state.redis_server = redis.start(home)
        state.kafka_nodes = kafka.start_cluster(home, brokers=brokers)
        save(state)
    assert state.redis_server is not None
    redis.wait_ready(state.redis_server)
    if redis_cluster:
        ensure_cluster(state, keep_data=keep_data)
    # Started on its data, Kafka first loads every partition's log: give it time.
    kafka.wait_ready(state.kafka_nodes, timeout=300)
    return state, True


def ensure_cluster(state: StackState, *, keep_data: bool = True) -> None:
    """A Redis Cluster up and settled, and the services pointed at it. Nodes that stopped
    start again on their data (their ``nodes.conf`` holds the cluster); with no data, or
    without ``keep_data``, a fresh cluster is made."""
    home = Path(state.home)
    if not state.redis_cluster_alive():
        restartable = keep_data and all(
            (Path(node.directory) / "nodes.conf").is_file() for node in state.redis_cluster
        )
        if state.redis_cluster and restartable:
            for index, node in enumerate(state.redis_cluster):
                if not alive(node.pid):
                    state.redis_cluster[index] = redis.restart_node(home, node)
        else:
            for node in state.redis_cluster:
                stop(node.pid)
            shutil.rmtree(home / "redis-cluster", ignore_errors=True)
            print("devstack: starting a Redis Cluster afresh", flush=True)
            state.redis_cluster = redis.start_cluster_nodes(home)
            save(state)
            redis.create_cluster(state.redis_cluster)
    state.services_use_cluster = True
    save(state)
    redis.wait_cluster_ready(state.redis_cluster)


def restart_cluster_node(state: StackState, node: redis.RedisServer) -> redis.RedisServer:
    """Start a stopped cluster node again where it was (it rejoins the cluster)."""
    index = state.redis_cluster.index(node)
    started = redis.restart_node(Path(state.home), node)
    state.redis_cluster[index] = started
    save(state)
    redis.wait_ready(started)
    return started


def _restartable(state: StackState, brokers: int) -> bool:
    """Whether the stack's own data is there to start from again, on the ports its Kafka
    nodes know each other by (KRaft's voters); another stack may have taken them since."""
    return (
        len(state.kafka_nodes) == brokers
        and all((Path(node.directory) / "data").is_dir() for node in state.kafka_nodes)
        and all(
            alive(node.pid) or (bindable(node.port) and bindable(node.controller_port))
            for node in state.kafka_nodes
        )
        and state.redis_server is not None
        and Path(state.redis_server.directory).is_dir()
    )


def start_api(
    state: StackState,
    *,
    namespace: str,
    port: int | None = None,
    name: str = "api",
    extra_env: dict[str, str] | None = None,
) -> AppProcess:
    port = port or free_port()
    env = {**state.service_env(namespace), "KT_API_PORT": str(port), **(extra_env or {})}
    return _start_app(state, name, ["-m", "services.api"], port, env, namespace)


def start_worker(
    state: StackState,
    *,
    namespace: str,
    name: str = "worker",
    extra_env: dict[str, str] | None = None,
) -> AppProcess:
    port = free_port()
    env = {**state.service_env(namespace), "KT_WORKER_WEB_PORT": str(port), **(extra_env or {})}
    return _start_app(state, name, ["-m", "services.worker"], port, env, namespace)


def _start_app(
    state: StackState, name: str, args: list[str], port: int, env: dict[str, str], namespace: str
) -> AppProcess:
    log = Path(state.home) / "logs" / f"{name}.log"
    pid = spawn([sys.executable, *args], log_file=log, env=env, cwd=REPO_ROOT)
    app = AppProcess(name=name, pid=pid, port=port, log=str(log), namespace=namespace)
    state.apps = [a for a in state.apps if a.name != name] + [app]
    save(state)
    return app


def wait_app_ready(app: AppProcess, *, timeout: float = 60.0) -> None:
    """Wait until the process answers 200 on /readyz (Kafka and Redis reachable)."""

    def ready() -> bool:
        if not alive(app.pid):
            raise DevstackError(f"{app.name} exited while starting:\n{tail(Path(app.log))}")
        try:
            with urllib.request.urlopen(f"{app.url}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    if not wait_for(ready, timeout=timeout, interval=0.2):
        raise DevstackError(f"{app.name} not ready after {timeout:.0f}s:\n{tail(Path(app.log))}")


def stop_app(state: StackState, name: str, *, grace_seconds: float = 30.0) -> None:
    stop_apps(state, [name], grace_seconds=grace_seconds)


def stop_apps(state: StackState, names: list[str], *, grace_seconds: float = 30.0) -> None:
    """SIGTERM all of them at once, then wait (SIGKILL after ``grace_seconds``)."""
    chosen = [a for a in state.apps if a.name in names]
    for app in chosen:
        signal_app(app, "TERM")
    for app in chosen:
        stop(app.pid, grace_seconds=grace_seconds)
    state.apps = [a for a in state.apps if a.name not in names]
    save(state)


def signal_app(app: AppProcess, name: str) -> None:
    import signal as signals

    with contextlib.suppress(ProcessLookupError):
        os.kill(app.pid, getattr(signals, f"SIG{name}"))


def stop_all(state: StackState) -> None:
    """Apps first (so workers commit while Kafka is still there), then Kafka, then Redis.
    The backends' places (ports, data) are kept: the next ``ensure_backends`` resumes them."""
    for app in state.apps:
        stop(app.pid)
    for node in state.kafka_nodes:
        stop(node.pid, grace_seconds=30)
    if state.redis_server is not None:
        stop(state.redis_server.pid)
    for member in state.redis_cluster:
        stop(member.pid)
    state.apps = []
    if Path(state.home).exists():
        save(state)


def restart_kafka(state: StackState) -> None:
    """Start every stopped Kafka node again and wait until the cluster answers."""
    home = Path(state.home)
    for node in state.kafka_nodes:
        if not alive(node.pid):
            kafka.restart_node(home, node)
    save(state)
    kafka.wait_ready(state.kafka_nodes)


def stop_kafka(state: StackState) -> None:
    """Stop every Kafka node, keeping its data (fault tests)."""
    for node in state.kafka_nodes:
        stop(node.pid, grace_seconds=30)


def stop_redis(state: StackState) -> None:
    """Stop Redis; it writes its AOF on the way down (fault tests)."""
    if state.redis_server is None:
        raise DevstackError("Redis is not running")
    stop(state.redis_server.pid)


def start_redis_again(state: StackState) -> None:
    """Start Redis on the same port and data after stop_redis."""
    server = state.redis_server
    if server is None:
        raise DevstackError("Redis was never started")
    state.redis_server = redis.start(Path(state.home), port=server.port)
    save(state)
    redis.wait_ready(state.redis_server)


def restart_redis(state: StackState) -> None:
    stop_redis(state)
    start_redis_again(state)


def describe(state: StackState) -> list[tuple[str, str, str, str]]:
    """(piece, running?, address, log) rows for `status` and `up`."""
    rows = []
    for node in state.kafka_nodes:
        rows.append(
            (
                f"kafka node {node.node_id}",
                _up(node.pid),
                f"127.0.0.1:{node.port}",
                short_path(node.log),
            )
        )
    if state.redis_server:
        server = state.redis_server
        rows.append(("redis", _up(server.pid), server.url, short_path(server.log)))
    for index, member in enumerate(state.redis_cluster, start=1):
        rows.append(
            (f"redis cluster node {index}", _up(member.pid), member.url, short_path(member.log))
        )
    for app in state.apps:
        rows.append((app.name, _up(app.pid), app.url, short_path(app.log)))
    return rows


def short_path(path: str | Path) -> str:
    resolved = Path(path)
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def _up(pid: int) -> str:
    return "running" if alive(pid) else "stopped"


def environment_exports(state: StackState, namespace: str) -> str:
    return "\n".join(f"export {k}={v}" for k, v in state.service_env(namespace).items())


def default_namespace() -> str:
    return os.environ.get("KT_NAMESPACE", "kt")
