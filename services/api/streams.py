"""How many event streams one API process keeps open at once.

Each open ``GET /tasks/<id>/events`` waits on a Redis connection of its own (a blocking
XREAD), so the streams' Redis pool is sized to this limit and a stream is admitted only
while a slot is free: an admitted stream never finds the pool empty, and one over the limit
gets a clear 503 before anything is read.
"""

from __future__ import annotations


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0

    def take(self) -> StreamLease | None:
        """A lease on one slot, or None when all are taken."""
        if self._open >= self.limit:
            return None
        self._open += 1
        return StreamLease(self)

    def _give_back(self) -> None:
        self._open -= 1


class StreamLease:
    """Held for the life of one stream; ``release`` may be called more than once (the
    stream's own cleanup and the response's background task both call it, so a stream that
    ends before its body ever ran still gives its slot back)."""

    def __init__(self, slots: StreamSlots) -> None:
        self._slots: StreamSlots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots._give_back()
            self._slots = None
