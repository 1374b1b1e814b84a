"""Submission priorities. Kafka has none: each prioritised task gets a topic per priority, and
the workers share their slots between the priorities by weight (``worker/slots.py``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Priority(StrEnum):
    HIGH = "high"
    """Overtakes a backlog of default and low tasks: most freed slots go to it."""
    DEFAULT = "default"
    LOW = "low"
    """Runs when nothing else waits, and still gets a share when everything does."""


DEFAULT_WEIGHTS: Final[dict[Priority, int]] = {
    Priority.HIGH: 6,
    Priority.DEFAULT: 3,
    Priority.LOW: 1,
}
"""When tasks of every priority wait for a slot, freed slots go 6 : 3 : 1 to high, default
and low (weighted round robin): high overtakes, and low never starves."""
