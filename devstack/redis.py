"""Debian's redis-server on a free loopback port, with AOF persistence like production: one
server, or a Redis Cluster of ``CLUSTER_MASTERS`` masters (each with a replica) made by
``redis-cli --cluster create``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from devstack import tools
from devstack.processes import DevstackError, alive, free_port, spawn, tail, wait_for

CLUSTER_MASTERS: Final = 3
CLUSTER_REPLICAS: Final = 1
"""Replicas per master: a master that dies is replaced by its replica (a failover)."""
CLUSTER_NODE_TIMEOUT_MS: Final = 3000
"""How long a master may be unreachable before its replica takes over (Redis's default is
15 s; a local stack and its failover test need not wait that long)."""


@dataclass
class RedisServer:
    port: int
    pid: int
    directory: str
    bus_port: int | None = None
    """A cluster node's port for the other nodes (its own choice: Redis would take port +
    10,000, which may be out of range or taken)."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return Path(self.directory) / "redis.log"


def start(
    home: Path,
    *,
    preferred_port: int | None = 6379,
    port: int | None = None,
    directory: Path | None = None,
    cluster: bool = False,
    bus_port: int | None = None,
) -> RedisServer:
    """Start redis-server; ``port`` pins the port (a restart keeps its address and its data).
    ``cluster`` starts it as a cluster node (its ``nodes.conf`` in ``directory``), its bus
    on ``bus_port`` (a free one when not given)."""
    tools.ensure("redis-server")
    directory = directory or home / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port(preferred_port)
    argv = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    if cluster:
        bus_port = bus_port or free_port()
        argv += [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus_port),
            "--cluster-config-file",
            str(directory / "nodes.conf"),
            "--cluster-node-timeout",
            str(CLUSTER_NODE_TIMEOUT_MS),
        ]
    pid = spawn(argv, log_file=directory / "redis.log")
    return RedisServer(port, pid, str(directory), bus_port if cluster else None)


def start_cluster_nodes(
    home: Path, *, masters: int = CLUSTER_MASTERS, replicas: int = CLUSTER_REPLICAS
) -> list[RedisServer]:
    """The cluster's servers, not yet a cluster (see ``create_cluster``)."""
    return [
        start(
            home,
            preferred_port=None,
            directory=home / "redis-cluster" / f"node-{index}",
            cluster=True,
        )
        for index in range(1, masters * (1 + replicas) + 1)
    ]


def restart_node(home: Path, node: RedisServer) -> RedisServer:
    """A cluster node started again where it was: same ports, data and ``nodes.conf``, so it
    rejoins its cluster."""
    return start(
        home, port=node.port, directory=Path(node.directory), cluster=True, bus_port=node.bus_port
    )


def create_cluster(nodes: list[RedisServer], *, replicas: int = CLUSTER_REPLICAS) -> None:
    """Join fresh nodes into one cluster: ``redis-cli --cluster create`` gives the first
    ``len(nodes) / (1 + replicas)`` nodes equal ranges of the 16,384 slots and the rest to
    them as replicas."""
    tools.ensure("redis-cli")
    for node in nodes:
        wait_ready(node)
    argv = [
        "redis-cli",
        "--cluster",
        "create",
        *(f"127.0.0.1:{node.port}" for node in nodes),
        "--cluster-replicas",
        str(replicas),
        "--cluster-yes",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    log = Path(nodes[0].directory).parent / "create.log"
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise DevstackError(f"redis-cli --cluster create failed:\n{tail(log)}")


def wait_cluster_ready(nodes: list[RedisServer], *, timeout: float = 60.0) -> None:
    """Every node up and agreeing that all slots are served (``cluster_state:ok``)."""
    for node in nodes:
        wait_ready(node, timeout=timeout)

    def settled() -> bool:
        for node in nodes:
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                # redis-py parses the reply into a dict; its execute_command is untyped.
                fields = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
            except redis.exceptions.RedisError:
                return False
            finally:
                client.close()
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
                return False
            if int(fields.get("cluster_known_nodes", 0)) != len(nodes):
                return False
        return True

    if not wait_for(settled, timeout=timeout, interval=0.2):
        raise DevstackError(f"the Redis Cluster did not settle in {timeout:.0f}s")


def cluster_url(nodes: list[RedisServer]) -> str:
    """Where a cluster client starts: any node (it learns the others from it)."""
    return f"redis://127.0.0.1:{nodes[0].port}"


def wait_ready(server: RedisServer, *, timeout: float = 30.0) -> None:
    def ready() -> bool:
        if not alive(server.pid):
            raise DevstackError(f"redis-server exited:\n{tail(server.log)}")
        try:
            client = redis.Redis(port=server.port, socket_timeout=1)
            try:
                answering = int(client.info("server")["process_id"])
            finally:
                client.close()
        except redis.exceptions.RedisError:
            return False
        if answering != server.pid:  # another Redis took the port first
            raise DevstackError(f"another Redis (pid {answering}) answers on port {server.port}")
        return True

    if not wait_for(ready, timeout=timeout, interval=0.1):
        raise DevstackError(f"Redis did not answer PING in {timeout:.0f}s:\n{tail(server.log)}")


@dataclass(frozen=True)
class ClusterMember:
    """One node as the cluster sees it (``CLUSTER NODES``)."""

    server: RedisServer
    node_id: str
    is_master: bool
    slots: tuple[tuple[int, int], ...]
    """Slot ranges it serves (first, last), masters only."""

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def cluster_members(nodes: list[RedisServer]) -> list[ClusterMember]:
    """Every node with its id, role and slots, as a node that answers sees them."""
    by_port = {node.port: node for node in nodes}
    for node in nodes:
        if not alive(node.pid):
            continue
        argv = ["redis-cli", "-p", str(node.port), "CLUSTER", "NODES"]
        answer = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        if answer.returncode != 0 or not answer.stdout.strip() or "ERR" in answer.stdout[:4]:
            continue
        text = answer.stdout
        members = []
        for line in text.strip().splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            if port not in by_port or "fail" in fields[2].split(","):
                continue
            ranges = []
            for token in fields[8:]:
                if token.startswith("["):  # a slot being moved, not yet served
                    continue
                first, _, last = token.partition("-")
                ranges.append((int(first), int(last or first)))
            is_master = "master" in fields[2].split(",")
            members.append(ClusterMember(by_port[port], fields[0], is_master, tuple(ranges)))
        return members
    raise DevstackError("no node of the Redis Cluster answers")


def reshard(
    nodes: list[RedisServer], *, source: str, target: str, slots: int, keys_per_batch: int = 10
) -> None:
    """Move ``slots`` slots (the first ones it serves) from master ``source`` to ``target``
    with ``redis-cli --cluster reshard``: ``keys_per_batch`` keys per MIGRATE, while clients
    keep writing (they are redirected with ASK, or told TRYAGAIN, until a slot has moved)."""
    entry = next(node for node in nodes if alive(node.pid))
    argv = [
        "redis-cli",
        "--cluster",
        "reshard",
        f"127.0.0.1:{entry.port}",
        "--cluster-from",
        source,
        "--cluster-to",
        target,
        "--cluster-slots",
        str(slots),
        "--cluster-pipeline",
        str(keys_per_batch),
        "--cluster-yes",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise DevstackError(f"redis-cli --cluster reshard failed:\n{done.stdout}{done.stderr}")


def reply_errors(nodes: list[RedisServer]) -> dict[str, int]:
    """Error replies the running nodes have sent since they started, by code (``INFO
    errorstats``): MOVED, ASK and TRYAGAIN show clients being redirected while slots move."""
    totals: dict[str, int] = {}
    for node in nodes:
        if not alive(node.pid):
            continue
        client = redis.Redis(port=node.port, socket_timeout=2)
        try:
            stats = client.info("errorstats")
        except redis.exceptions.RedisError:
            continue
        finally:
            client.close()
        for name, value in stats.items():
            code = name.removeprefix("errorstat_")
            totals[code] = totals.get(code, 0) + int(value["count"])
    return totals
