"""Start, find and stop detached background processes, and wait for conditions."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Popen objects of the processes this interpreter started, kept so they are reaped properly
# (and not reported as "still running" when garbage-collected).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class DevstackError(Exception):
    """Something the local stack needs is missing or did not come up."""


LISTEN_PORTS_FROM = 20000
"""Ports the local stack listens on are taken from here up to the kernel's ephemeral range."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if nothing listens on it on 127.0.0.1, otherwise a free port below the
    ephemeral range: a server restarted on its old port (a broker after a fault) must not
    find it taken by some process's outgoing connection, which draws ephemeral ports."""
    if preferred is not None and bindable(preferred):
        return preferred
    low = _ephemeral_low()
    candidates = list(range(LISTEN_PORTS_FROM, low))
    random.SystemRandom().shuffle(candidates)
    for port in candidates[:500]:
        if bindable(port):
            return port
    with socket.socket() as probe:  # a crowded machine: any port at all
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bindable(port: int) -> bool:
    """Whether a server could listen on ``port`` of 127.0.0.1 now."""
    if port_open(port):
        return False
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` in its own session, detached, appending output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid in _CHILDREN:
        return _CHILDREN[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes: reap it if it is our child.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def stop(pid: int | None, *, grace_seconds: float = 20.0) -> None:
    """SIGTERM the process's group, then SIGKILL it if it is still there after the grace."""
    if not alive(pid):
        return
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    if not wait_for(lambda: not alive(pid), timeout=grace_seconds, interval=0.1):
        _signal_group(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), timeout=5, interval=0.1)


def exit_code(pid: int) -> int | None:
    """The exit status of a process this interpreter started, once it has ended."""
    process = _CHILDREN.get(pid)
    return None if process is None else process.poll()


def kill(pid: int) -> None:
    """SIGKILL the process's group at once (fault tests)."""
    _signal_group(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), timeout=5, interval=0.05)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; True if it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
