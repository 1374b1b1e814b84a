"""Waiting out a Kafka or Redis outage inside the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.core.errors import BackendUnavailableError
from services.core.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

MAX_DELAY_SECONDS = 5.0


async def until_available(operation: Callable[[], Awaitable[T]]) -> T:
    """Repeat a Redis or Kafka operation until it succeeds.

    A message is acknowledged only after its outcome is stored, so waiting out an outage here
    is what at-least-once means. Cancelled (and so ended) when the worker stops.
    """
    delay = 0.1
    while True:
        try:
            return await operation()
        except BackendUnavailableError as error:
            log.warning(
                "backend unavailable; will retry",
                backend=error.backend,
                reason=error.reason,
                in_seconds=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
