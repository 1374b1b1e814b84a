"""The check as a whole: build KEDA's scaler for each stack's chart version, run every case on
the local Kafka, print KEDA's figures beside the model's, and report any difference."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devstack import stack as devstack
from infra.render import REPO_ROOT, STACKS
from kedacheck.build import BuiltScaler, ensure_scaler
from kedacheck.cases import setting_readings, stack_readings
from kedacheck.compare import HEADERS, render_rows
from kedacheck.probe import Reading
from kedacheck.stacks import chart_version, stack_scaled_object

OUT = REPO_ROOT / "build" / "keda-check"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kedacheck",
        description="Run KEDA's own kafka scaler on each stack's ScaledObject against the local "
        "Kafka and compare it with services/core/scaling.py; exit 1 on any difference.",
    )
    parser.add_argument("stacks", nargs="*", default=list(STACKS), help="default: all")
    parser.add_argument("--no-settings", action="store_true", help="skip the trigger-setting cases")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or reuse) the scaler and stop"
    )
    parser.add_argument(
        "--bootstrap-servers",
        help="a Kafka to use instead of the local stack's (started if needed)",
    )
    parser.add_argument("--verbose", action="store_true", help="KEDA's own log lines on stderr")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    unknown = [s for s in args.stacks if s not in STACKS]
    if unknown:
        parser.error(f"unknown stack(s) {unknown}; choose from {', '.join(STACKS)}")
    return args


def build_all(stacks: list[str], console: Console) -> dict[str, BuiltScaler]:
    """One build per chart version the stacks deploy."""
    built: dict[str, BuiltScaler] = {}
    for name in stacks:
        version = chart_version(name)
        if version not in built:
            built[version] = ensure_scaler(version, console)
            state = "reused" if built[version].reused else "built"
            console.print(
                f"keda-check: KEDA {built[version].version} scaler {state} in "
                f"{built[version].seconds:.1f} s: {built[version].binary}"
            )
    return built


async def run_all(
    args: argparse.Namespace, bootstrap: str, built: dict[str, BuiltScaler], console: Console
) -> dict[str, list[Reading]]:
    sections: dict[str, list[Reading]] = {}
    template = None
    for name in args.stacks:
        scaled = stack_scaled_object(name, bootstrap)
        template = template or scaled
        readings: list[Reading] = []
        started = time.monotonic()
        await stack_readings(built[scaled.chart_version].binary, scaled, bootstrap, readings)
        console.print(
            f"keda-check: {name}: {len(readings)} readings in {time.monotonic() - started:.1f} s"
        )
        sections[f"stack {name} (KEDA {built[scaled.chart_version].version})"] = readings
    if not args.no_settings and template is not None:
        readings = []
        namespace = f"kc{uuid.uuid4().hex[:8]}"
        binary = built[template.chart_version].binary
        await setting_readings(binary, template.manifest, bootstrap, namespace, readings)
        sections[f"trigger settings (KEDA {built[template.chart_version].version})"] = readings
    return sections


def report(sections: dict[str, list[Reading]], console: Console, out: Path) -> list[str]:
    problems = []
    markdown = ["# KEDA's kafka scaler next to services/core/scaling.py", ""]
    for title, readings in sections.items():
        table = Table(title=title, show_lines=False)
        for header in HEADERS:
            table.add_column(header, overflow="fold")
        rows = render_rows([r.figures for r in readings])
        for row in rows:
            table.add_row(*row, style="red" if "DIFFERENT" in row[-1] else None)
        console.print(table)
        markdown += [f"## {title}", "", "| " + " | ".join(HEADERS) + " |"]
        markdown.append("|" + " --- |" * len(HEADERS))
        markdown += ["| " + " | ".join(row) + " |" for row in rows]
        markdown.append("")
        problems += [p for r in readings for p in r.problems()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(markdown))
    (out / "readings.json").write_text(
        json.dumps(
            {
                title: [
                    {**dataclasses.asdict(r.figures), "problems": r.problems()} for r in readings
                ]
                for title, readings in sections.items()
            },
            indent=2,
        )
    )
    return problems


def local_bootstrap(args: argparse.Namespace) -> tuple[str, devstack.StackState | None]:
    """The Kafka to use, and the stack state to stop afterwards when this run started it."""
    if args.bootstrap_servers:
        return str(args.bootstrap_servers), None
    state, started_here = devstack.ensure_backends(devstack.DEFAULT_HOME)
    return state.bootstrap_servers, state if started_here else None
