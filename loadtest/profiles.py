"""Load shapes as pure functions of the elapsed time, and the task-mix notation.

A profile answers, at ``elapsed`` seconds into the run, how many users should be running and at
which rate to get there, or ``None`` when the run is over. Keeping that arithmetic out of the
Locust classes (``shapes.py``) lets tests check them without importing Locust, which
monkey-patches the standard library with gevent on import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPIKE_USERS = 1000
"""The proof of concept's spike: 1,000 concurrent users."""


@dataclass(frozen=True)
class Params:
    users: int
    spawn_rate: float
    duration: float
    """Seconds."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.spawn_rate <= 0 or self.duration <= 0:
            raise ValueError("users, spawn rate and duration must be positive")


Tick = tuple[int, float] | None


def steady(elapsed: float, p: Params) -> Tick:
    """``users`` from the start (ramped at ``spawn_rate``) until ``duration``."""
    return (p.users, p.spawn_rate) if elapsed < p.duration else None


def step_ramp(elapsed: float, p: Params, *, steps: int = 5) -> Tick:
    """``steps`` equal steps up to ``users``, each held for ``duration / steps``: the step where
    latency bends shows the capacity."""
    if elapsed >= p.duration:
        return None
    step = min(int(elapsed // (p.duration / steps)), steps - 1)
    return (max(1, math.ceil(p.users * (step + 1) / steps)), p.spawn_rate)


def spike(elapsed: float, p: Params, *, spike_users: int = SPIKE_USERS) -> Tick:
    """``users`` for the first third, ``spike_users`` (reached within about 5 s) for the second
    third, ``users`` again for the last: does the system recover, and how fast."""
    if elapsed >= p.duration:
        return None
    third = p.duration / 3
    if third <= elapsed < 2 * third:
        return (spike_users, max(p.spawn_rate, spike_users / 5))
    return (p.users, max(p.spawn_rate, spike_users / 5))


def parse_weights(text: str, allowed: set[str]) -> dict[str, int]:
    """``"noop:5,sleep:3"`` -> ``{"noop": 5, "sleep": 3}``; a name without weight counts 1."""
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        if name not in allowed:
            raise ValueError(f"unknown name {name!r} in {text!r}; known: {sorted(allowed)}")
        weights[name] = int(weight or 1)
        if weights[name] < 0:
            raise ValueError(f"negative weight for {name!r}")
    if not weights or sum(weights.values()) <= 0:
        raise ValueError(f"no positive weight in {text!r}")
    return weights
