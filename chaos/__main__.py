"""`python -m chaos [--seed N] [--duration 10m] [--longest 60]`: one seeded chaos run on the
real local stack; writes build/chaos/report.md and timeline.png, exits 1 on any violation."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from chaos import report
from chaos.run import OUT, Options, run


def seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="replays a run (default: random)")
    parser.add_argument("--duration", type=seconds, default=600.0, help="e.g. 600, 10m")
    parser.add_argument("--longest", type=seconds, default=60.0, help="longest fault")
    parser.add_argument("--rate", type=float, default=6.0, help="requests per second")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    console = Console()
    console.print(f"chaos: seed {seed} (replay with --seed {seed}), {args.duration:.0f} s")
    options = Options(seed, args.duration, longest=args.longest, rate=args.rate)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as bars:
        bar = bars.add_task("starting", total=options.duration + options.settle)

        said = [-10.0]

        def tell(at: float, what: str) -> None:
            bars.update(bar, completed=at, description=what)
            if not console.is_terminal and at - said[0] >= 10:  # a log, not a screen
                said[0] = at
                print(f"chaos: {at:6.0f} s  {what}", flush=True)

        outcome = asyncio.run(run(options, tell))
    path = report.write(outcome, OUT)
    for name, value in report.figures(outcome).items():
        console.print(f"  {name}: {value}")
    violations = outcome.verdict.violations
    for violation in violations[:20]:
        console.print(f"[red]{violation.check}[/red]: {violation.detail} {violation.task_ids[:3]}")
    console.print(f"{len(violations)} violation(s); report: {path}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
