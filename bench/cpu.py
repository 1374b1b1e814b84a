"""CPU time per process from /proc, to say where a run's cycles went (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); 0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces; fields after its closing paren are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def per_task_ms(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """CPU milliseconds each process spent per task between two snapshots."""
    if tasks <= 0:
        return {}
    return {name: 1000 * (after[name] - before[name]) / tasks for name in before}
