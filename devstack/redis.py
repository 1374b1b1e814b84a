"""Debian's redis-server on a free loopback port, with AOF persistence like production."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devstack import tools
from devstack.processes import DevstackError, alive, free_port, spawn, tail, wait_for


@dataclass
class RedisServer:
    port: int
    pid: int
    directory: str

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
    extra_args: list[str] | None = None,
) -> RedisServer:
    """Start redis-server; ``port`` pins the port (a restart keeps its address and its data);
    ``extra_args`` come last (the secure stack's TLS and ACL file, ``devstack.secure``)."""
    tools.ensure("redis-server")
    directory = home / "redis"
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
        *(extra_args or []),
    ]
    pid = spawn(argv, log_file=directory / "redis.log")
    return RedisServer(port, pid, str(directory))


def wait_ready(
    server: RedisServer, *, timeout: float = 30.0, connect: dict[str, Any] | None = None
) -> None:
    """Until our server answers; ``connect`` holds the client's credentials and TLS options
    (the secure stack's administrator)."""

    def ready() -> bool:
        if not alive(server.pid):
            raise DevstackError(f"redis-server exited:\n{tail(server.log)}")
        try:
            client = redis.Redis(port=server.port, socket_timeout=1, **(connect or {}))
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
