"""The stack under test: 3 Kafka brokers (topics replicated 3 times, min.insync.replicas 2),
Redis with AOF, 2 API processes and 3 workers, all on 127.0.0.1 under ``build/chaos/.stack``.

Every process is a *target* the nemesis may kill, pause, resume or restart by name
(``redis``, ``broker-1``..``broker-3``, ``api-1``, ``api-2``, ``worker-1``..``worker-3``). The
cluster also watches them: a process that dies while the nemesis did not touch it is a
violation (``deaths``), and it is started again so the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio

from devstack import kafka, processes, stack
from services.core.keys import SHARDS, RedisKeys
from services.core.states import TaskState

CHAOS_HOME = stack.REPO_ROOT / "build" / "chaos" / ".stack"

# Short timeouts, leases and sweeps: faults of seconds to a minute must play out (and be
# recovered from) within a run of minutes. The relations the services check still hold.
SERVICE_ENV = {
    "KT_REDIS_TIMEOUT_SECONDS": "2",
    "KT_KAFKA_REQUEST_TIMEOUT_MS": "5000",
    "KT_PUBLISH_DEADLINE_SECONDS": "15",
    "KT_WORKER_LEASE_SECONDS": "10",
    "KT_WORKER_SWEEP_INTERVAL_SECONDS": "2",
    "KT_WORKER_SESSION_TIMEOUT_SECONDS": "6",
    "KT_WORKER_SHUTDOWN_GRACE_SECONDS": "5",
    "KT_TOPIC_PARTITIONS": "6",
    "KT_TOPIC_REPLICATION_FACTOR": "3",
    "KT_RESULT_TTL_SECONDS": "86400",
}


def answer_bounds(env: dict[str, str] = SERVICE_ENV) -> dict[str, float]:
    """How long each kind of request may take at most, by the configured backend timeouts: a
    submission waits for Redis, then Kafka, then Redis again; the rest wait for Redis once."""
    redis = float(env["KT_REDIS_TIMEOUT_SECONDS"])
    kafka_seconds = int(env["KT_KAFKA_REQUEST_TIMEOUT_MS"]) / 1000
    return {"submit": 2 * redis + kafka_seconds, "cancel": redis}


@dataclass
class Death:
    at: float
    target: str
    log_tail: str


@dataclass
class ChaosCluster:
    state: stack.StackState
    namespace: str
    apis: dict[str, stack.AppProcess] = field(default_factory=dict)
    workers: dict[str, stack.AppProcess] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    """Targets the nemesis has down or paused: the watch leaves them alone."""
    deaths: list[Death] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, namespace: str, *, home: Path = CHAOS_HOME) -> ChaosCluster:
        """A fresh stack: the chaos home's data is wiped first, so a seed replays the same."""
        home.mkdir(parents=True, exist_ok=True)
        stack.share_jar_cache(home)
        stack.stop_all(stack.load(home))
        for data in ("kafka", "redis", "logs", "worker-data", "state.json"):
            path = home / data
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        state, _ = stack.ensure_backends(home, brokers=3)
        cluster = cls(state, namespace)
        pending = [cluster._start_api(f"api-{index}") for index in (1, 2)]
        pending += [cluster._start_worker(f"worker-{index}") for index in (1, 2, 3)]
        for app in pending:
            stack.wait_app_ready(app, timeout=120)
        return cluster

    @property
    def api_urls(self) -> dict[str, str]:
        return {name: app.url for name, app in self.apis.items()}

    def targets(self) -> list[str]:
        return [
            "redis",
            *(f"broker-{n.node_id}" for n in self.state.kafka_nodes),
            *sorted([*self.apis, *self.workers]),
        ]

    def pid(self, target: str) -> int:
        if target == "redis":
            assert self.state.redis_server is not None
            return self.state.redis_server.pid
        if target.startswith("broker-"):
            return self._node(target).pid
        return (self.apis.get(target) or self.workers[target]).pid

    def signal(self, target: str, sig: signal.Signals) -> None:
        """Send ``sig`` to a target (SIGKILL, SIGTERM, SIGSTOP, SIGCONT)."""
        self.held.add(target)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid(target), sig)

    def wait_gone(self, target: str, *, grace: float = 30) -> None:
        """Until the target's process has exited; SIGKILL after ``grace`` seconds, as
        Kubernetes does after a pod's termination grace period."""
        pid = self.pid(target)
        if not processes.wait_for(lambda: not processes.alive(pid), timeout=grace, interval=0.1):
            self.signal(target, signal.SIGKILL)
            processes.wait_for(lambda: not processes.alive(pid), timeout=30, interval=0.1)

    def restart(self, target: str) -> None:
        """Start a stopped target again, on its own data and address; returns when it serves."""
        self.restart_all([target])

    def restart_all(self, targets: list[str]) -> None:
        """Start stopped targets again together (brokers need each other for a quorum)."""
        brokers = [self._node(t) for t in targets if t.startswith("broker-")]
        for node in brokers:
            kafka.restart_node(Path(self.state.home), node)
        if brokers:
            stack.save(self.state)
        if "redis" in targets:
            stack.start_redis_again(self.state)
        apps = [self._start_api(t) for t in targets if t in self.apis]
        apps += [self._start_worker(t) for t in targets if t in self.workers]
        if brokers:
            kafka.wait_ready(brokers, timeout=120)
        for app in apps:  # started together, waited for in turn
            stack.wait_app_ready(app, timeout=180)
        self.held.difference_update(targets)

    async def retrying(self) -> str | None:
        """A task of this run that waits for its retry now, if any (None if Redis is out)."""
        client = redis.asyncio.Redis.from_url(self.state.redis_url, socket_timeout=1)
        keys = RedisKeys(self.namespace)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for shard in range(SHARDS):
                    pipe.zrange(keys.index(shard, state=TaskState.RETRY.value), 0, 0)
                members = [m for found in await pipe.execute() for m in found]
        except redis.RedisError:
            return None
        finally:
            await client.aclose()
        if not members:
            return None
        first = members[0]
        return first.decode() if isinstance(first, bytes) else str(first)

    def release(self, target: str) -> None:
        """The nemesis is done with a target it resumed (SIGCONT)."""
        self.held.discard(target)

    def watch(self) -> list[str]:
        """Targets that died on their own since the last look; each is started again."""
        dead = [
            target
            for target in self.targets()
            if target not in self.held and not processes.alive(self.pid(target))
        ]
        for target in dead:
            self.record_death(target)
            self.held.add(target)
            self.restart_until_up([target])
        return dead

    def record_death(self, target: str, *, why: str = "") -> None:
        tail = processes.tail(self._log(target))
        self.deaths.append(Death(time.monotonic() - self.started_at, target, f"{why}{tail}"))

    def restart_until_up(self, targets: list[str], *, attempts: int = 5) -> None:
        """``restart_all``; a target that exits while starting is a death (a violation), and
        is started again, so that one failure does not end the run."""
        for _ in range(attempts):
            try:
                self.restart_all([t for t in targets if not processes.alive(self.pid(t))])
                self.held.difference_update(targets)
                return
            except processes.DevstackError as error:
                failed = [t for t in targets if not processes.alive(self.pid(t))]
                for target in failed:
                    self.record_death(target, why=f"failed to start: {error}\n")
                time.sleep(2)
        raise RuntimeError(f"could not start {targets} again in {attempts} attempts")

    def close(self) -> None:
        stack.stop_all(self.state)

    def keep_logs(self, directory: Path) -> None:
        """Copy every process's log next to the report (the next run wipes the stack)."""
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for target in self.targets():
            log = self._log(target)
            if log.exists():
                shutil.copy(log, directory / f"{target}.log")

    def _start_api(self, name: str) -> stack.AppProcess:
        previous = self.apis.get(name)
        app = stack.start_api(
            self.state,
            namespace=self.namespace,
            name=f"{self.namespace}-{name}",
            port=previous.port if previous else None,
            extra_env=SERVICE_ENV,
        )
        self.apis[name] = app
        return app

    def _start_worker(self, name: str) -> stack.AppProcess:
        full = f"{self.namespace}-{name}"
        datadir = Path(self.state.home) / "worker-data" / full
        datadir.parent.mkdir(parents=True, exist_ok=True)
        app = stack.start_worker(
            self.state,
            namespace=self.namespace,
            name=full,
            extra_env={**SERVICE_ENV, "F_DATADIR": str(datadir)},
        )
        self.workers[name] = app
        return app

    def _node(self, target: str) -> kafka.KafkaNode:
        number = int(target.removeprefix("broker-"))
        return next(n for n in self.state.kafka_nodes if n.node_id == number)

    def _log(self, target: str) -> Path:
        if target == "redis":
            assert self.state.redis_server is not None
            return self.state.redis_server.log
        if target.startswith("broker-"):
            return self._node(target).log
        return Path((self.apis.get(target) or self.workers[target]).log)
