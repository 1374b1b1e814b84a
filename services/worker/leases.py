"""The leases of the attempts a worker runs.

Starting an attempt takes a lease (``worker_lease_seconds``) in the same write; the worker
renews all of its leases every third of a lease, so a live worker that reaches Redis never
loses one. A lease lapses only when its worker is gone, paused, cut off from Redis for longer
than a lease, or when Redis lost the writes: then the reaper re-queues the task. An attempt
whose task moved on (claimed by the reaper, or over after its time limit) is marked lost, and
its task code is stopped at its next progress report.
"""

from __future__ import annotations

import time
from uuid import UUID

from services.core.errors import BackendUnavailableError
from services.core.limiter import ConcurrencyKey
from services.core.logs import get_logger
from services.core.store import TaskStore

log = get_logger(__name__)


class LeaseKeeper:
    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._limiter = store.limiter()
        self._held: dict[UUID, int] = {}
        self._slots: dict[UUID, ConcurrencyKey] = {}
        self._lost: set[tuple[UUID, int]] = set()
        self.last_failure: float = time.monotonic()
        """When renewing last failed (monotonic); the worker's start counts as one, since
        leases may have lapsed while no worker ran."""

    @property
    def interval_seconds(self) -> float:
        return self._store.lease_seconds / 3

    def hold(self, task_id: UUID, attempt: int, slot: ConcurrencyKey | None = None) -> None:
        """``slot``: the attempt's concurrency slot, renewed with its lease."""
        self._held[task_id] = attempt
        if slot is not None:
            self._slots[task_id] = slot

    def release(self, task_id: UUID, attempt: int) -> None:
        if self._held.get(task_id) == attempt:
            del self._held[task_id]
            self._slots.pop(task_id, None)
        self._lost.discard((task_id, attempt))

    def is_lost(self, task_id: UUID, attempt: int) -> bool:
        return (task_id, attempt) in self._lost

    async def renew(self) -> None:
        held = dict(self._held)
        try:
            lost = await self._store.renew_leases(held)
            await self._limiter.renew(list(self._slots.values()))
        except BackendUnavailableError:
            self.last_failure = time.monotonic()
            raise
        for task_id in lost:
            if self._held.get(task_id) == held[task_id]:
                self._lost.add((task_id, held[task_id]))
                log.warning(
                    "attempt no longer holds its task; it stops at its next progress report",
                    task_id=str(task_id),
                    attempt=held[task_id],
                )
