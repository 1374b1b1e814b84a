"""A worker's task slots, shared between priorities by weight.

Each priority topic has its own agent, and an agent waits for a slot before it reads its next
message, so at most one message per topic waits here. When a slot frees and several
priorities wait, it goes to one chosen by smooth weighted round robin (nginx's): with weights
6 : 3 : 1 high gets six of every ten freed slots, and low still one, so high-priority tasks
overtake a backlog without starving it. While slots are free, nobody waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from services.core.priorities import Priority


class WeightedSlots:
    def __init__(self, capacity: int, weights: Mapping[Priority, int]) -> None:
        self._free = capacity
        self._weights = {priority: weights.get(priority, 1) for priority in Priority}
        self._waiting: dict[Priority, deque[asyncio.Future[None]]] = {p: deque() for p in Priority}
        self._credit: dict[Priority, int] = dict.fromkeys(Priority, 0)

    @property
    def free(self) -> int:
        return self._free

    def waiting(self, priority: Priority) -> int:
        return sum(1 for future in self._waiting[priority] if not future.done())

    async def acquire(self, priority: Priority) -> None:
        if self._free > 0 and not any(self._waiting.values()):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            else:
                self._waiting[priority].remove(future)
            raise

    def release(self) -> None:
        """Give a slot back: to a waiter chosen by weight, or to the free pool."""
        priority = self._pick()
        if priority is None:
            self._free += 1
            return
        self._waiting[priority].popleft().set_result(None)

    def _pick(self) -> Priority | None:
        candidates = [p for p, queue in self._waiting.items() if queue]
        if not candidates:
            return None
        total = sum(self._weights[p] for p in candidates)
        for p in candidates:
            self._credit[p] += self._weights[p]
        chosen = max(candidates, key=lambda p: self._credit[p])
        self._credit[chosen] -= total
        return chosen
