"""Workflows (Celery's canvas): what a chain, a group and a chord are, and where one stands.

- chain: its members run one after the other; each gets the previous one's result in the
  payload field its signature names (``previous_as``). A member that does not complete stops
  the chain: the workflow ends FAILURE naming that member.
- group: its members run in parallel; the group counts them (n of m done) and keeps their
  results in order. It ends COMPLETE once all completed, FAILURE (naming the first member
  that did not) once all finished otherwise.
- chord: a group, then a callback that gets the list of results in ``results_as`` once every
  member finished. A member that does not complete means no callback (as in Celery) and the
  chord ends FAILURE, unless ``call_on_failure``: then the callback runs with ``None`` in the
  failed members' places.

The bookkeeping lives in ``workflow_scripts.py``: a member's terminal write updates its
workflow in the same Redis script, so a member finishes once, whatever copies of its message
run. Submitting what comes next is ``workflow_engine.py``'s job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from services.core.states import TaskState

MAX_MEMBERS: Final = 100
"""Members one workflow may have (the callback of a chord not counted)."""


class WorkflowKind(StrEnum):
    CHAIN = "chain"
    """One after the other, each getting the previous result."""
    GROUP = "group"
    """All at once; the results in member order."""
    CHORD = "chord"
    """A group, then a callback with the list of results."""


class WorkflowState(StrEnum):
    RUNNING = "RUNNING"
    """Members run or wait for their turn."""
    COMPLETE = "COMPLETE"
    """Every member (and a chord's callback) completed."""
    FAILURE = "FAILURE"
    """A member did not complete (failed, expired or was cancelled on its own): ``failed``
    names it. A chain stops there; a group finishes its other members; a chord skips its
    callback (unless ``call_on_failure``)."""
    CANCELLED = "CANCELLED"
    """Cancelled by a client: pending members were cancelled, running ones stop at their
    next check, and nothing more is submitted."""

    @property
    def is_terminal(self) -> bool:
        return self is not WorkflowState.RUNNING


class Signature(BaseModel):
    """One task of a workflow: its name and payload (Celery's signature)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(max_length=200)
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    previous_as: str | None = Field(
        default="previous",
        max_length=200,
        description="In a chain: the payload field that receives the previous member's "
        "result (None: it is not passed). Ignored for the first member and in groups.",
    )


class WorkflowSpec(BaseModel):
    """What ``POST /workflows`` takes."""

    model_config = ConfigDict(extra="forbid")

    kind: WorkflowKind
    tasks: list[Signature] = Field(min_length=1, max_length=MAX_MEMBERS)
    """The chain's links in order, or the group's (chord's) members."""
    callback: Signature | None = None
    """A chord's callback (required for a chord, refused otherwise)."""
    results_as: str = Field(
        default="results",
        max_length=200,
        description="A chord: the callback's payload field that receives the results list.",
    )
    call_on_failure: bool = Field(
        default=False,
        description="A chord: call the callback even when members did not complete "
        "(their results are null). Celery's default, false, skips it.",
    )

    @model_validator(mode="after")
    def _callback_fits_kind(self) -> Self:
        if self.kind is WorkflowKind.CHORD and self.callback is None:
            raise ValueError("a chord needs a callback (the task that gets all results)")
        if self.kind is not WorkflowKind.CHORD and self.callback is not None:
            raise ValueError(f"a {self.kind.value} takes no callback; use kind 'chord'")
        if self.kind is not WorkflowKind.CHORD and self.call_on_failure:
            raise ValueError("call_on_failure is for chords only")
        return self

    def request_body(self) -> dict[str, Any]:
        """As ``POST /workflows`` takes it: a chord's options only for a chord."""
        body = self.model_dump(mode="json")
        if self.kind is not WorkflowKind.CHORD:
            for option in ("callback", "results_as", "call_on_failure"):
                body.pop(option)
        return body

    @property
    def steps(self) -> list[Signature]:
        """Every task in step order: the members, then a chord's callback."""
        return [*self.tasks, *([self.callback] if self.callback else [])]


class WorkflowLink(BaseModel):
    """On a member's task record: the workflow it belongs to and its step in it."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    step: int = Field(ge=0)


class FailedMember(BaseModel):
    """The member that made a workflow fail."""

    step: int
    task_id: UUID | None
    """None when its task could not even be submitted (``error`` says why)."""
    status: TaskState
    error: str | None = None


class WorkflowMember(BaseModel):
    step: int
    task: str
    task_id: UUID | None = None
    """None until it is submitted (a later chain link, a chord's callback)."""
    status: TaskState | None = None
    """None until submitted; PENDING once submitted and then as the member's task moves on
    (terminal states as the workflow recorded them)."""
    is_callback: bool = False


class WorkflowRecord(BaseModel):
    """A workflow's current state, as ``GET /workflows/<id>`` returns it."""

    id: UUID
    kind: WorkflowKind
    status: WorkflowState
    total: int
    """Members (a chord's callback not counted)."""
    done: int
    """Members finished, whatever their outcome (n of ``total``)."""
    members: list[WorkflowMember]
    callback: WorkflowMember | None = None
    results: list[JsonValue]
    """Member results in member order (null for one not (yet) complete)."""
    result: JsonValue = None
    """The workflow's result: a chain's last result, a group's results, a chord's callback's."""
    failed: FailedMember | None = None
    call_on_failure: bool = False
    version: int
    created_at: datetime
    updated_at: datetime


class WorkflowEvent(BaseModel):
    """One change of a workflow, as its event stream carries it."""

    step: int | None = None
    """The member that moved; None for a change of the workflow itself (cancel)."""
    task_id: UUID | None = None
    member_status: TaskState | None = None
    status: WorkflowState
    done: int
    total: int
    version: int


def member_id(workflow_id: UUID, step: int) -> UUID:
    """A member's task id, derived from its workflow's and its step: a submission that is
    tried again makes the same task, never a second one. It keeps the workflow id's first two
    bytes, so a layout that places keys by them keeps a workflow with its members."""
    derived = uuid.uuid5(workflow_id, f"step-{step}").bytes
    return UUID(bytes=workflow_id.bytes[:2] + derived[2:])
