"""The seed scenario (``loadtest/seed.py``) with Locust, headless, against one system: 1,000
users spawned at 100/s for 90 s, each submitting a 0.5-2 s ``sleep`` and polling it every
second. Returns what the benchmark compares: tasks completed, failures, end-to-end latency."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness

LOCUSTFILE = harness.REPO_ROOT / "loadtest" / "seed.py"


@dataclass(frozen=True)
class SeedOptions:
    users: int = 1000
    spawn_rate: float = 100.0
    seconds: int = 90


def run(system: str, url: str, options: SeedOptions, out: Path) -> dict[str, Any]:
    """Locust against ``url``; its CSV and HTML reports go to ``out/seed-<system>*``."""
    prefix = out / f"seed-{system}"
    locust = shutil.which("locust") or "locust"
    command = [
        locust,
        *("-f", str(LOCUSTFILE)),
        "--headless",
        *("--host", url),
        *("-u", str(options.users), "-r", str(options.spawn_rate), "-t", f"{options.seconds}s"),
        *("--stop-timeout", "5"),
        *("--csv", str(prefix), "--html", f"{prefix}.html"),
        "--only-summary",
        *("--exit-code-on-error", "0"),
    ]
    # Locust prints its own summary when it ends; a failed request is counted, not fatal.
    subprocess.run(command, cwd=harness.REPO_ROOT, check=False)
    return summarize(system, Path(f"{prefix}_stats.csv"), options)


def summarize(system: str, stats_csv: Path, options: SeedOptions) -> dict[str, Any]:
    with stats_csv.open() as lines:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(lines)}
    tasks = rows.get(("TASK", "sleep via poll"), {})
    total = rows.get(("", "Aggregated"), {})
    completed = _int(tasks, "Request Count") - _int(tasks, "Failure Count")
    return {
        "system": system,
        "scenario": f"seed {options.users} users",
        "completed": completed,
        "task_failures": _int(tasks, "Failure Count"),
        "failures": _int(total, "Failure Count"),
        "requests": _int(total, "Request Count"),
        "requests_per_second": _float(total, "Requests/s"),
        "p50_ms": _float(tasks, "50%"),
        "p95_ms": _float(tasks, "95%"),
        "p99_ms": _float(tasks, "99%"),
        "completion_rate": completed / options.seconds,
    }


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key)
    return int(float(value)) if value not in (None, "", "N/A") else 0


def _float(row: dict[str, str], key: str) -> float:
    value = row.get(key)
    return float(value) if value not in (None, "", "N/A") else math.nan
