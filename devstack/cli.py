"""`devstack up | down | status | env`: the Makefile's local-stack targets."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from devstack import kafka, stack, tools
from devstack.processes import DevstackError, alive

console = Console()


def up(
    home: Path, *, brokers: int, workers: int, apps: bool, api_port: int, redis_cluster: bool
) -> None:
    started = time.monotonic()
    redis_kind = "a Redis Cluster" if redis_cluster else "Redis"
    with console.status(f"starting Kafka and {redis_kind}"):
        state, fresh = stack.ensure_backends(home, brokers=brokers, redis_cluster=redis_cluster)
    what = "started" if fresh else "already running"
    console.print(
        f"Kafka {kafka.kafka_version()} and {redis_kind} {what} ({time.monotonic() - started:.1f}s)"
    )
    if state.services_use_cluster and not redis_cluster:
        console.print("[yellow]the services of this stack use its Redis Cluster[/yellow]")
    if apps:
        namespace = stack.default_namespace()
        running = {a.name for a in state.apps if alive(a.pid)}
        pending = []
        if "api" not in running:
            pending.append(stack.start_api(state, namespace=namespace, port=api_port))
        for index in range(1, workers + 1):
            if f"worker-{index}" not in running:
                pending.append(
                    stack.start_worker(state, namespace=namespace, name=f"worker-{index}")
                )
        with console.status(f"waiting for {', '.join(a.name for a in pending) or 'apps'}"):
            for app in pending:
                stack.wait_app_ready(app)
    print_status(stack.load(home))
    console.print(f"ready in {time.monotonic() - started:.1f}s; `make down` stops everything")


def print_status(state: stack.StackState) -> None:
    table = Table(title="kafka-tasks local stack")
    for column in ("piece", "state", "address"):
        table.add_column(column, no_wrap=True)
    table.add_column("log", overflow="fold")
    for row in stack.describe(state):
        table.add_row(*row)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument(
        "--home",
        type=Path,
        default=stack.DEFAULT_HOME,
        help="where data, logs and state live (default: .devstack/)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start Kafka, Redis, the API and workers")
    up_parser.add_argument("--brokers", type=int, default=1, choices=[1, 3])
    up_parser.add_argument("--workers", type=int, default=1)
    up_parser.add_argument("--api-port", type=int, default=8000)
    up_parser.add_argument("--no-apps", action="store_true", help="only Kafka and Redis")
    up_parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help=(
            "also start a Redis Cluster (3 masters, each with a replica) and point the "
            "services at it"
        ),
    )
    commands.add_parser("tools", help="install missing system tools and fetch Kafka's jars")
    commands.add_parser("down", help="stop everything and leave no process behind")
    commands.add_parser("status", help="what runs where")
    commands.add_parser("env", help="print KT_* exports pointing at the running stack")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(
                args.home,
                brokers=args.brokers,
                workers=args.workers,
                apps=not args.no_apps,
                api_port=args.api_port,
                redis_cluster=args.redis_cluster,
            )
        elif args.command == "tools":
            tools.ensure("java", "mvn", "redis-server", "redis-cli", "chromium")
            libs = kafka.ensure_jars(args.home)
            console.print(
                "java, maven, redis-server, redis-cli and chromium present; Kafka "
                f"{kafka.kafka_version()} jars cached in {stack.short_path(libs)}"
            )
        elif args.command == "down":
            state = stack.load(args.home)
            with console.status("stopping"):
                stack.stop_all(state)
            console.print("local stack stopped")
        elif args.command == "status":
            state = stack.load(args.home)
            if not state.backends_alive() and not any(alive(a.pid) for a in state.apps):
                console.print(
                    "the local stack is not running; `make up` starts it (on the data it kept; "
                    "`make clean` removes that)"
                )
            else:
                print_status(state)
        elif args.command == "env":
            print(stack.environment_exports(stack.load(args.home), stack.default_namespace()))
    except DevstackError as error:
        console.print(f"[red]devstack: {error}[/red]")
        return 1
    return 0
