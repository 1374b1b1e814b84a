"""How a task record is stored in a Redis hash, and how its lean events become records again.

A record's fields hold JSON, except a few plain strings and integers (``RAW_FIELDS``). An
event (``state_scripts.py``) holds only what a write after the create changed, plus status,
version and attempts; the payload and the result stay in the record. Replaying events
therefore starts from the record as its create made it (PENDING, version 1: its immutable
fields) and takes the result from the record when it reaches COMPLETE (a COMPLETE record
never changes again, and expires with its events).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from services.core.models import TaskRecord
from services.core.states import TaskState

RAW_FIELDS: Final = frozenset(
    {
        "status",
        "version",
        "attempts",
        "delivery",
        "created_us",
        "write",
        "message",
        "due_ms",
        "rate_slot",
    }
)
"""Fields stored as plain strings or integers; every other field holds JSON."""

IMMUTABLE_FIELDS: Final = ("id", "task", "payload", "created_at")
"""Set once by the create, never by an event: replaying starts from them."""

Fields = Mapping[bytes | str, bytes | str]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_fields(fields: Fields) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for raw_key, raw_value in fields.items():
        key, value = text(raw_key), text(raw_value)
        data[key] = value if key in RAW_FIELDS else json.loads(value)
    return data


def record_from_fields(fields: Fields) -> TaskRecord:
    return TaskRecord.model_validate(decode_fields(fields))


def flat_to_mapping(flat: Sequence[bytes | str]) -> dict[bytes | str, bytes | str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def encode_fields(fields: Mapping[str, Any]) -> list[str]:
    encoded: list[str] = []
    for name, value in fields.items():
        encoded += [name, json.dumps(value, default=_json_default)]
    return encoded


def apply_event(record: TaskRecord, event: Fields, *, final: TaskRecord | None) -> TaskRecord:
    """The record as it stood after the write ``event`` describes, given the one before.
    ``final`` is the stored record, whose result a COMPLETE event refers to."""
    change = decode_fields(event)
    if change.get("status") == TaskState.COMPLETE.value and final is not None:
        change["result"] = final.result
    return TaskRecord.model_validate({**record.model_dump(), **change})


def history_from(fields: Fields, events: Sequence[tuple[Any, Fields]]) -> list[TaskRecord]:
    """Every state a task went through, oldest first, from its stored record and its event
    entries: the create's PENDING (unless the stream's cap dropped the oldest events), then
    one state per event."""
    final = record_from_fields(fields)
    immutable = final.model_dump(include=set(IMMUTABLE_FIELDS))
    state = TaskRecord.model_validate(
        {**immutable, "status": TaskState.PENDING, "version": 1, "updated_at": final.created_at}
    )
    history = []
    if not events or int(decode_fields(events[0][1])["version"]) == 2:
        history.append(state)
    for _, event in events:
        state = apply_event(state, event, final=final)
        history.append(state)
    return history


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")
