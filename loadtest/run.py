"""``python -m loadtest.run``: Locust headless with the reports in build/loadtest/.

The target is ``KAFKA_TASKS_URL`` when set (a deployed stack; ``KAFKA_TASKS_API_KEY`` goes
along), else the API of the local stack that ``make up`` started (its port is read from
devstack's state, so a moved port is found). Locust prints its statistics every few seconds
while it runs; the verdict against the thresholds comes last and sets the exit code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack import stack

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "loadtest"


def local_api_url() -> str:
    state = stack.load(stack.DEFAULT_HOME)
    for app in state.apps:
        if app.name == "api":
            return app.url
    raise SystemExit("no local API running: run `make up` first (or set KAFKA_TASKS_URL)")


def command(args: argparse.Namespace, url: str) -> list[str]:
    locust = shutil.which("locust") or "locust"
    return [
        locust,
        *("-f", str(ROOT / "loadtest" / "locustfile.py")),
        "--headless",
        *("--host", url),
        *("-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration),
        *("--stop-timeout", "15"),
        *("--csv", str(args.out / "locust"), "--html", str(args.out / "report.html")),
        *("--max-fail-ratio", str(args.max_fail_ratio)),
        *(("--max-p99-ms", str(args.max_p99_ms)) if args.max_p99_ms else ()),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", default="30s", help="Locust notation: 30s, 2m, 1m30s")
    parser.add_argument("--shape", default="steady", choices=["steady", "ramp", "spike", "none"])
    parser.add_argument("--max-fail-ratio", type=float, default=0.01)
    parser.add_argument("--max-p99-ms", type=float, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("KAFKA_TASKS_URL") or local_api_url()
    argv_locust = command(args, url)
    print(f"loadtest: {args.shape} shape, {args.users} users, {args.duration} against {url}")
    env = {**os.environ, "LOADTEST_SHAPE": args.shape}
    code = subprocess.call(argv_locust, env=env, cwd=ROOT)
    print(f"loadtest: reports in {args.out}/ (report.html, locust_stats.csv, ...)")
    return code


if __name__ == "__main__":
    sys.exit(main())
