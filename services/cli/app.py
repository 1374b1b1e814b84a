"""`kafka-tasks`: submit, follow and manage tasks from a terminal.

Exit codes: 0 done, 1 the task failed, 3 cancelled, 4 not found, 5 timed out,
6 unauthorised, 7 service unavailable, 8 bad request, 9 expired (2 is a usage error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from services.cli import render
from services.client import (
    BadRequest,
    Client,
    ClientError,
    ServiceUnavailable,
    TaskCancelledError,
    TaskExpired,
    TaskFailed,
    TaskNotFound,
    TaskRecord,
    Unauthorized,
    WaitTimeout,
    WorkflowFailed,
    WorkflowRecord,
    WorkflowSpec,
)
from services.core.settings import Settings

app = typer.Typer(help=__doc__, no_args_is_help=True, rich_markup_mode="rich")
dlq = typer.Typer(help="Dead-lettered tasks (reads Kafka directly, with the KT_* settings).")
app.add_typer(dlq, name="dlq")
workflow = typer.Typer(help="Chains, groups and chords (Celery's canvas).", no_args_is_help=True)
app.add_typer(workflow, name="workflow")
console = Console()
errors = Console(stderr=True)

EXIT: dict[type[ClientError], int] = {
    TaskFailed: 1,
    TaskCancelledError: 3,
    TaskNotFound: 4,
    WaitTimeout: 5,
    Unauthorized: 6,
    ServiceUnavailable: 7,
    BadRequest: 8,
    TaskExpired: 9,
}
WORKFLOW_EXIT = {"FAILURE": 1, "CANCELLED": 3}
TERMINAL_EXIT = {"FAILURE": 1, "CANCELLED": 3, "EXPIRED": 9}

Url = Annotated[str | None, typer.Option("--url", envvar="KAFKA_TASKS_URL", help="API base URL.")]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="KAFKA_TASKS_API_KEY", help="API key.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@contextmanager
def client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose errors end the command with their exit code and a one-line reason."""
    try:
        with Client(url, api_key=api_key) as http:
            yield http
    except ClientError as error:
        errors.print(str(error), style="red", markup=False, highlight=False, soft_wrap=True)
        if isinstance(error, TaskFailed) and error.remote_traceback:
            errors.print(error.remote_traceback, markup=False, highlight=False)
        if isinstance(error, WorkflowFailed):
            raise typer.Exit(WORKFLOW_EXIT[error.record.status]) from None
        raise typer.Exit(EXIT.get(type(error), 1)) from None


def emit(record: TaskRecord, as_json: bool) -> None:
    if as_json:
        console.print_json(record.model_dump_json())
    else:
        console.print(render.record_panel(record))


def parse_payload(payload: str | None, fields: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(payload) if payload else {}
    if not isinstance(body, dict):
        raise typer.BadParameter("the payload must be a JSON object", param_hint="--payload")
    for field in fields:
        name, sep, raw = field.partition("=")
        if not sep:
            raise typer.BadParameter(f"{field!r} is not key=value", param_hint="-f")
        try:
            body[name] = json.loads(raw)
        except json.JSONDecodeError:
            body[name] = raw
    return body


@app.command()
def submit(
    task: Annotated[str, typer.Argument(help="A task name (see the API's /catalog).")],
    payload: Annotated[str | None, typer.Option("--payload", "-p", help="JSON object.")] = None,
    field: Annotated[
        list[str],
        typer.Option("--field", "-f", help="key=value (value parsed as JSON if it can be)."),
    ] = [],  # noqa: B006  (typer needs a literal default)
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat safely with the same key.")
    ] = None,
    countdown: Annotated[
        float | None, typer.Option(help="Queue it this many seconds from now.")
    ] = None,
    eta: Annotated[
        datetime | None,
        typer.Option(help="Queue it at this time (ISO 8601; UTC unless it has an offset)."),
    ] = None,
    expires: Annotated[
        float | None, typer.Option(help="Seconds from now after which it is not started.")
    ] = None,
    priority: Annotated[
        str | None, typer.Option(help="high, default or low (prioritized tasks).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it to the end with a progress bar.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after seconds.")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit a task."""
    body = parse_payload(payload, field)
    with client(url, api_key) as http:
        record = http.submit(
            task,
            body,
            idempotency_key=idempotency_key,
            countdown=countdown,
            eta=eta if eta is None or eta.tzinfo else eta.replace(tzinfo=UTC),
            expires=expires,
            priority=priority,
        )
        if wait:
            record = follow(http, str(record.id), timeout=timeout, quiet=as_json)
        emit(record, as_json)


@app.command("submit-batch")
def submit_batch(
    source: Annotated[
        typer.FileText,
        typer.Argument(help='JSON Lines: {"task": ..., "payload": {...}} per line; - is stdin'),
    ],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat the same batch safely with the same key.")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit many tasks in one request, all or nothing (POST /tasks/batch)."""
    items: list[tuple[str, dict[str, Any] | None]] = []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            items.append((entry["task"], entry.get("payload")))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise typer.BadParameter(
                f'line {number}: not {{"task": ..., "payload": {{...}}}} ({error})',
                param_hint="SOURCE",
            ) from None
    with client(url, api_key) as http:
        records = http.submit_many(items, idempotency_key=idempotency_key)
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in records]))
    else:
        console.print(render.records_table(records))


@app.command()
def status(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show a task's current record (exit 1 if it failed, 3 if cancelled, 9 if expired)."""
    with client(url, api_key) as http:
        record = http.get(task_id)
        emit(record, as_json)
        if record.status.is_terminal and record.status != "COMPLETE":
            raise typer.Exit(TERMINAL_EXIT[record.status])


@app.command()
def watch(
    task_id: str,
    timeout: Annotated[float | None, typer.Option(help="Give up after seconds.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Follow a task live until it finishes."""
    with client(url, api_key) as http:
        emit(follow(http, task_id, timeout=timeout, quiet=as_json), as_json)


def follow(http: Client, task_id: str, *, timeout: float | None, quiet: bool) -> TaskRecord:
    """Show the task's progress live; returns its COMPLETE record or raises like Client.wait."""
    if quiet:
        return http.wait(task_id, timeout=timeout)
    with Live(console=console, refresh_per_second=8, transient=True) as live:
        for record in http.events(task_id):
            live.update(render.record_panel(record))
            if record.status.is_terminal:
                break
    return http.wait(task_id, timeout=timeout)


@app.command()
def cancel(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Cancel a task (exit 8 if it already finished)."""
    with client(url, api_key) as http:
        emit(http.cancel(task_id), as_json)


@app.command("list")
def list_tasks(
    state: Annotated[
        str | None, typer.Option(help="PENDING, PROGRESS, RETRY, COMPLETE, ...")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Only this task name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Recent tasks, newest first."""
    with client(url, api_key) as http:
        records, _ = http.list(state=state.upper() if state else None, task=task, limit=limit)
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in records]))
    else:
        console.print(render.records_table(records))


def emit_workflow(record: WorkflowRecord, as_json: bool) -> None:
    if as_json:
        console.print_json(record.model_dump_json())
    else:
        console.print(render.workflow_panel(record))


@workflow.command("submit")
def workflow_submit(
    spec: Annotated[
        str,
        typer.Argument(
            help='The workflow as JSON, or @file: {"kind": "chain", "tasks": [{"task": "add", '
            '"payload": {"x": 1}}, ...]}; a chord adds "callback".'
        ),
    ],
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat the same workflow safely with the same key.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it ends.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after seconds.")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit a chain, group or chord (exit 1 if it fails, 3 if cancelled, with --wait)."""
    text = Path(spec[1:]).read_text(encoding="utf-8") if spec.startswith("@") else spec
    try:
        body = WorkflowSpec.model_validate_json(text)
    except ValidationError as error:
        raise typer.BadParameter(str(error), param_hint="SPEC") from None
    with client(url, api_key) as http:
        record = http.submit_workflow(body, idempotency_key=idempotency_key)
        if wait:
            record = http.wait_workflow(record.id, timeout=timeout)
        emit_workflow(record, as_json)


@workflow.command("status")
def workflow_status(
    workflow_id: str, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Show a workflow: n of m done, each member's state and result (exit 1 if it failed,
    3 if cancelled)."""
    with client(url, api_key) as http:
        record = http.get_workflow(workflow_id)
        emit_workflow(record, as_json)
        if record.status in WORKFLOW_EXIT:
            raise typer.Exit(WORKFLOW_EXIT[record.status])


@workflow.command("cancel")
def workflow_cancel(
    workflow_id: str, url: Url = None, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Cancel a workflow and its pending and running members (exit 8 if it ended)."""
    with client(url, api_key) as http:
        emit_workflow(http.cancel_workflow(workflow_id), as_json)


@app.command()
def schedules(url: Url = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Periodic schedules with their next and last run."""
    with client(url, api_key) as http:
        items = http.schedules()
    if as_json:
        console.print_json(json.dumps([item.model_dump(mode="json") for item in items]))
    else:
        console.print(render.schedules_table(items))


@dlq.command("list")
def dlq_list(
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    as_json: AsJson = False,
) -> None:
    """Dead letters not yet re-driven."""
    from services.tasks import catalog
    from services.worker.redrive import redrive

    items = asyncio.run(redrive(Settings(), catalog, limit=limit, dry_run=True))
    print_redriven(items, as_json)


@dlq.command("redrive")
def dlq_redrive(
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    as_json: AsJson = False,
) -> None:
    """Submit dead-lettered tasks again, as new tasks with the same payload."""
    from services.tasks import catalog
    from services.worker.redrive import redrive

    print_redriven(asyncio.run(redrive(Settings(), catalog, limit=limit)), as_json)


def print_redriven(items: list[Any], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "id": str(i.old_id),
                "task": i.task,
                "new_id": i.new_id and str(i.new_id),
                "error": i.error,
            }
            for i in items
        ]
        console.print_json(json.dumps(rows))
        return
    table = Table()
    for column in ("dead-lettered id", "task", "re-driven as", "error"):
        table.add_column(column)
    for item in items:
        table.add_row(str(item.old_id), item.task, str(item.new_id or "-"), item.error)
    console.print(table)


@app.command()
def lag(as_json: AsJson = False) -> None:
    """Per-topic consumer lag of the workers' group, read from Kafka as KEDA's kafka scaler
    reads it, and the replica count the worker ScaledObject would ask for (KT_* settings)."""
    from services.core.autoscaling import read_scaling
    from services.tasks import catalog

    _, decision = asyncio.run(read_scaling(Settings(), catalog))
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(decision)))
        return
    table = Table(title=f"consumer group {Settings().consumer_group}")
    for column in ("topic", "partitions", "with lag", "lag", "KEDA metric", "asks for"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for reading in decision.triggers:
        table.add_row(
            reading.topic,
            str(reading.partitions),
            str(reading.partitions_with_lag),
            str(reading.lag),
            f"{reading.metric}{' (capped)' if reading.capped else ''}",
            str(reading.replicas),
        )
    console.print(table)
    console.print(f"KEDA would run [bold]{decision.replicas}[/bold] worker(s): {decision.reason}")
    for note in decision.notes:
        console.print(f"  {note}", highlight=False)
