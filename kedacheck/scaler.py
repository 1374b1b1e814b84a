"""Drive the Go program: KEDA's kafka scalers for one ScaledObject, polled on request.

One process per ScaledObject keeps one scaler per trigger alive between polls, as KEDA's
operator does between polling intervals (``excludePersistentLag`` remembers the previous poll).
The protocol is JSON lines; see ``kedacheck/go/main.go``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedacheck.errors import KedaCheckError

START_TIMEOUT_SECONDS = 60.0
POLL_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class KedaTrigger:
    """A trigger as KEDA built it: the metric the HPA is given and its AverageValue target."""

    index: int
    topic: str
    metric_name: str
    target: str
    target_milli: int


@dataclass(frozen=True)
class KedaScaledObject:
    """What KEDA made of the ScaledObject before the first poll."""

    keda_version: str
    min_replica_count: int
    hpa_min_replicas: int
    hpa_max_replicas: int
    tolerance_up: float
    tolerance_down: float
    triggers: tuple[KedaTrigger, ...]


@dataclass(frozen=True)
class KedaTriggerPoll:
    index: int
    metric_milli: int
    """The metric value as the HPA reads it (milli-units)."""
    active: bool
    replicas: int | None
    """What the HPA asks for from this metric alone; None when the trigger failed."""
    error: str | None

    @property
    def metric(self) -> float:
        return self.metric_milli / 1000


@dataclass(frozen=True)
class KedaPoll:
    triggers: tuple[KedaTriggerPoll, ...]
    active: bool
    replicas: int | None
    limited_by: str


class KedaScaler:
    """A running Go program; use :func:`running`."""

    def __init__(self, process: asyncio.subprocess.Process, scaled_object: KedaScaledObject):
        self._process = process
        self.scaled_object = scaled_object

    async def poll(self, current_replicas: int | None = None) -> KedaPoll:
        """Every trigger's metric and activity now, and the replica count for
        ``current_replicas`` (None: the HPA's target without the tolerance)."""
        reply = await _exchange(self._process, {"currentReplicas": current_replicas}, "poll")
        return KedaPoll(
            triggers=tuple(
                KedaTriggerPoll(
                    index=int(t["index"]),
                    metric_milli=int(t["metricMilli"]),
                    active=bool(t["active"]),
                    replicas=None if t.get("replicas") is None else int(t["replicas"]),
                    error=t.get("error") or None,
                )
                for t in reply["triggers"]
            ),
            active=bool(reply["active"]),
            replicas=None if reply.get("replicas") is None else int(reply["replicas"]),
            limited_by=str(reply["limitedBy"]),
        )


@contextlib.asynccontextmanager
async def running(
    binary: Path, scaled_object: Mapping[str, Any], *, verbose: bool = False
) -> AsyncIterator[KedaScaler]:
    """Start the program on ``scaled_object`` (a manifest); closes the scalers on exit."""
    process = await asyncio.create_subprocess_exec(
        str(binary),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None if verbose else asyncio.subprocess.DEVNULL,
    )
    try:
        ready = await _exchange(
            process,
            {"scaledObject": scaled_object, "verbose": verbose},
            "ready",
            seconds=START_TIMEOUT_SECONDS,
        )
        yield KedaScaler(process, _scaled_object(ready))
    finally:
        await _stop(process)


def _scaled_object(ready: Mapping[str, Any]) -> KedaScaledObject:
    return KedaScaledObject(
        keda_version=str(ready["kedaVersion"]),
        min_replica_count=int(ready["minReplicaCount"]),
        hpa_min_replicas=int(ready["hpaMinReplicas"]),
        hpa_max_replicas=int(ready["hpaMaxReplicas"]),
        tolerance_up=float(ready["toleranceUp"]),
        tolerance_down=float(ready["toleranceDown"]),
        triggers=tuple(
            KedaTrigger(
                index=int(t["index"]),
                topic=str(t["topic"]),
                metric_name=str(t["metricName"]),
                target=str(t["target"]),
                target_milli=int(t["targetMilli"]),
            )
            for t in ready["triggers"]
        ),
    )


async def _exchange(
    process: asyncio.subprocess.Process,
    message: Mapping[str, Any],
    key: str,
    *,
    seconds: float = POLL_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    try:
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), seconds)
    except (BrokenPipeError, ConnectionResetError):
        line = b""
    except TimeoutError:
        raise KedaCheckError(f"KEDA's scaler did not answer within {seconds:.0f} s") from None
    if not line:
        raise KedaCheckError(f"KEDA's scaler exited (code {await process.wait()}) without answer")
    reply: dict[str, Any] = json.loads(line)
    if "error" in reply:
        raise KedaCheckError(f"KEDA's scaler refused the ScaledObject: {reply['error']}")
    body: dict[str, Any] = reply[key]
    return body


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None and process.stdin is not None:
        process.stdin.close()  # EOF: the program closes its scalers and exits
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
