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

STATE_STYLE = {
    "PENDING": "yellow",
    "PROGRESS": "cyan",
    "RETRY": "magenta",
    "COMPLETE": "green",
    "FAILURE": "red",
    "CANCELLED": "dim",
    "EXPIRED": "dim",
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
