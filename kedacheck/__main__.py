"""``python -m kedacheck [stack ...]``: KEDA's kafka scaler against the model (see run.py)."""

from __future__ import annotations

import asyncio
import sys

from rich.console import Console

from devstack import stack as devstack
from kedacheck.run import build_all, local_bootstrap, parse_args, report, run_all


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    built = build_all(args.stacks, console)
    if args.build_only:
        return 0
    bootstrap, started = local_bootstrap(args)
    try:
        sections = asyncio.run(run_all(args, bootstrap, built, console))
    finally:
        if started is not None:
            devstack.stop_all(devstack.load(devstack.DEFAULT_HOME))
    problems = report(sections, console, args.out)
    readings = sum(len(r) for r in sections.values())
    if problems:
        console.print(f"[red]keda-check: {len(problems)} difference(s) in {readings} readings:[/]")
        for problem in problems:
            console.print(f"  {problem}", highlight=False)
        return 1
    console.print(
        f"keda-check: KEDA and the model agree on all {readings} readings "
        f"(report: {args.out}/report.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
