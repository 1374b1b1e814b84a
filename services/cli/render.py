"""Rich renderings of records and tables for the CLI."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from services.core.models import TaskRecord
from services.core.schedules import ScheduleStatus
from services.core.workflows import WorkflowRecord

STATE_STYLE = {
    "PENDING": "yellow",
    "PROGRESS": "cyan",
    "RETRY": "magenta",
    "COMPLETE": "green",
    "FAILURE": "red",
    "CANCELLED": "dim",
    "EXPIRED": "dim",
    "RUNNING": "cyan",
}


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, ""))


def record_panel(record: TaskRecord) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", str(record.id))
    table.add_row("task", record.task)
    table.add_row("state", state(record.status))
    percent = record.progress.percent if record.progress else 0
    message = record.progress.message if record.progress else ""
    table.add_row("progress", Group(ProgressBar(total=100, completed=percent, width=30), message))
    table.add_row("attempts", str(record.attempts))
    table.add_row("payload", json.dumps(record.payload))
    if record.result is not None:
        table.add_row("result", json.dumps(record.result))
    if record.error is not None:
        table.add_row("error", f"{record.error.type}: {record.error.message}")
    if record.retry_at is not None:
        table.add_row("retry at", record.retry_at.isoformat())
    if record.priority != "default":
        table.add_row("priority", record.priority)
    if record.due_at is not None:
        table.add_row("due", f"{record.due_at.isoformat()} ({record.held_by or 'eta'})")
    if record.expires_at is not None:
        table.add_row("expires", record.expires_at.isoformat())
    if record.schedule is not None:
        table.add_row("schedule", f"{record.schedule.name} @ {record.schedule.tick.isoformat()}")
    table.add_row("created", record.created_at.isoformat())
    table.add_row("updated", record.updated_at.isoformat())
    return Panel(table, title=f"task {str(record.id)[:8]}", expand=False)


def records_table(records: list[TaskRecord]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True, min_width=36)
    for column in ("task", "state", "progress", "attempts", "created"):
        table.add_column(column)
    for record in records:
        percent = record.progress.percent if record.progress else 0
        table.add_row(
            str(record.id),
            record.task,
            state(record.status),
            f"{percent:.0f}%",
            str(record.attempts),
            record.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def schedules_table(items: list[ScheduleStatus]) -> Table:
    table = Table()
    for column in ("schedule", "task", "rule", "next run", "last run", "last task", "skipped"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.name,
            item.task,
            item.rule,
            item.next_run_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
            item.last_run_at.strftime("%Y-%m-%d %H:%M:%S %Z") if item.last_run_at else "-",
            item.last_task_id or "-",
            str(item.skipped),
        )
    return table


def workflow_panel(record: WorkflowRecord) -> RenderableType:
    """The workflow's state, n of m done, and one row per member (and callback)."""
    members = Table(box=None, padding=(0, 2))
    for column in ("step", "task", "state", "task id", "result"):
        members.add_column(column)
    for member in [*record.members, *([record.callback] if record.callback else [])]:
        result = record.results[member.step] if member.step < record.total else record.result
        members.add_row(
            "callback" if member.is_callback else str(member.step),
            member.task,
            state(member.status) if member.status else Text("not submitted", style="dim"),
            str(member.task_id or ""),
            json.dumps(result) if result is not None else "",
        )
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("id", str(record.id))
    summary.add_row("kind", record.kind)
    summary.add_row("state", state(record.status))
    summary.add_row(
        "done",
        Group(
            ProgressBar(total=record.total, completed=record.done, width=30),
            f"{record.done} of {record.total}",
        ),
    )
    if record.failed is not None:
        failed = record.failed
        summary.add_row("failed", f"step {failed.step} ({failed.status}) {failed.error or ''}")
    if record.result is not None:
        summary.add_row("result", json.dumps(record.result))
    return Panel(Group(summary, members), title=f"workflow {str(record.id)[:8]}", expand=False)
