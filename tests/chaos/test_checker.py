"""The checker can fail: each guarantee it checks, broken on purpose in a made-up run."""

from __future__ import annotations

import uuid
from typing import Any

from chaos.checker import ApiKill, check
from chaos.snapshot import Snapshot
from chaos.workload import Op
from services.core.models import DeadLetter, TaskError, TaskMessage, TaskRecord, utcnow
from services.core.states import TaskState

BOUNDS = {"submit": 9.0, "cancel": 2.0}


def record(
    task_id: str, task: str, status: TaskState, version: int = 3, **fields: Any
) -> TaskRecord:
    now = utcnow()
    return TaskRecord(
        id=uuid.UUID(task_id),
        task=task,
        status=status,
        payload=fields.pop("payload", {}),
        version=version,
        created_at=now,
        updated_at=now,
        **fields,
    )


def history(task_id: str, task: str, *states: TaskState) -> list[TaskRecord]:
    return [record(task_id, task, s, version=n + 1) for n, s in enumerate(states)]


def submission(number: int, task: str, payload: dict[str, Any], **answer: Any) -> Op:
    op = Op(number, "submit", "api-1", sent_at=1.0, task=task, payload=payload)
    op.key = f"chaos-op-{number}"
    op.answered_at = 1.2
    for name, value in answer.items():
        setattr(op, name, value)
    return op


def snapshot(
    records: dict[str, TaskRecord],
    histories: dict[str, list[TaskRecord]],
    *,
    keys: dict[str, str] | None = None,
    letters: list[DeadLetter] | None = None,
) -> Snapshot:
    by_state: dict[str, int] = {}
    summary: dict[str, dict[str, int]] = {}
    for item in records.values():
        by_state[item.status.value] = by_state.get(item.status.value, 0) + 1
        counts = summary.setdefault(item.task, {})
        counts[item.status.value] = counts.get(item.status.value, 0) + 1
    return Snapshot(records, histories, keys or {}, letters or [], by_state, summary)


def checks_failed(ops: list[Op], snap: Snapshot) -> set[str]:
    verdict = check(ops, snap, bounds=BOUNDS, deaths=[], api_kills=[], settled=True)
    return {violation.check for violation in verdict.violations}


def test_a_clean_run_passes() -> None:
    task_id = str(uuid.uuid4())
    ops = [submission(0, "noop", {"echo": "op-0"}, status=202, task_id=task_id)]
    done = record(task_id, "noop", TaskState.COMPLETE, result="op-0")
    states = (TaskState.PENDING, TaskState.PROGRESS, TaskState.COMPLETE)
    snap = snapshot({task_id: done}, {task_id: history(task_id, "noop", *states)})
    assert checks_failed(ops, snap) == set()


def test_an_accepted_task_left_running_or_lost_is_a_violation() -> None:
    left, lost = str(uuid.uuid4()), str(uuid.uuid4())
    ops = [
        submission(0, "noop", {"echo": "op-0"}, status=202, task_id=left),
        submission(1, "noop", {"echo": "op-1"}, status=202, task_id=lost),
    ]
    running = record(left, "noop", TaskState.PROGRESS, version=2)
    snap = snapshot(
        {left: running},
        {left: history(left, "noop", TaskState.PENDING, TaskState.PROGRESS)},
    )
    assert {"terminal", "accepted-kept", "nothing-live-left"} <= checks_failed(ops, snap)


def test_a_record_left_by_a_refused_submission_is_a_violation() -> None:
    task_id = str(uuid.uuid4())
    ops = [submission(0, "noop", {"echo": "op-0"}, status=503)]
    done = record(task_id, "noop", TaskState.COMPLETE, result="op-0")
    states = (TaskState.PENDING, TaskState.PROGRESS, TaskState.COMPLETE)
    snap = snapshot(
        {task_id: done},
        {task_id: history(task_id, "noop", *states)},
        keys={task_id: "chaos-op-0"},
    )
    assert "refused-leaves-nothing" in checks_failed(ops, snap)
    # The same record after a submission that got no answer ran to its end: allowed.
    ops[0].status, ops[0].failure = None, "no-answer"
    ops[0].answered_at = None
    verdict = check(
        ops, snap, bounds=BOUNDS, deaths=[], api_kills=[ApiKill("api-1", 1.1, 1.3)], settled=True
    )
    assert verdict.violations == []


def test_a_terminal_state_left_or_a_wrong_outcome_is_a_violation() -> None:
    task_id = str(uuid.uuid4())
    ops = [submission(0, "fail", {"message": "op-0"}, status=202, task_id=task_id)]
    states = (TaskState.PENDING, TaskState.COMPLETE, TaskState.PROGRESS, TaskState.COMPLETE)
    done = record(task_id, "fail", TaskState.COMPLETE, version=4)
    snap = snapshot({task_id: done}, {task_id: history(task_id, "fail", *states)})
    assert {"final-is-final", "right-outcome"} <= checks_failed(ops, snap)


def test_dead_letters_must_match_the_failed_tasks() -> None:
    failed, fine = str(uuid.uuid4()), str(uuid.uuid4())
    ops = [
        submission(0, "fail", {"message": "op-0"}, status=202, task_id=failed),
        submission(1, "noop", {"echo": "op-1"}, status=202, task_id=fine),
    ]
    error = TaskError(type="DemoTaskError", message="op-0")
    records = {
        failed: record(failed, "fail", TaskState.FAILURE, error=error),
        fine: record(fine, "noop", TaskState.COMPLETE, result="op-1"),
    }
    histories = {
        failed: history(failed, "fail", TaskState.PENDING, TaskState.PROGRESS, TaskState.FAILURE),
        fine: history(fine, "noop", TaskState.PENDING, TaskState.PROGRESS, TaskState.COMPLETE),
    }
    wrong = DeadLetter(
        message=TaskMessage(id=uuid.UUID(fine), task="noop", payload={}), error=error, attempts=1
    )
    assert checks_failed(ops, snapshot(records, histories, letters=[wrong])) == {"dead-letters"}


def test_a_cancel_answered_200_must_end_cancelled_and_slow_answers_are_caught() -> None:
    task_id = str(uuid.uuid4())
    ops = [
        submission(0, "sleep", {"seconds": 1.0, "steps": 2}, status=202, task_id=task_id),
        Op(1, "cancel", "api-2", sent_at=2.0, target=task_id, answered_at=30.0, status=200),
    ]
    done = record(task_id, "sleep", TaskState.COMPLETE, result={"slept_seconds": 1.0})
    states = (TaskState.PENDING, TaskState.PROGRESS, TaskState.COMPLETE)
    snap = snapshot({task_id: done}, {task_id: history(task_id, "sleep", *states)})
    assert checks_failed(ops, snap) == {"cancel-kept", "answer-time"}


def test_no_answer_is_excused_only_from_an_api_that_was_dying_while_the_request_was_out() -> None:
    # api-1 was SIGKILLed at 10.0 and seen gone at 10.4: a connection its socket took in
    # between is dropped without an answer, which is what a killed pod does too.
    kill = ApiKill("api-1", 10.0, 10.4)
    ops = [
        Op(0, "submit", "api-1", sent_at=9.9, answered_at=10.1),  # out when the kill came
        Op(1, "submit", "api-1", sent_at=10.2, answered_at=10.2),  # sent while it was dying
        Op(2, "submit", "api-1", sent_at=11.0, answered_at=11.0),  # after it was gone
        Op(3, "submit", "api-2", sent_at=10.2, answered_at=10.2),  # to the other API
        Op(4, "submit", "api-1", sent_at=9.0, answered_at=9.5),  # before the kill
    ]
    for op in ops:
        op.failure = "no-answer"
    verdict = check(ops, snapshot({}, {}), bounds=BOUNDS, deaths=[], api_kills=[kill], settled=True)
    unexcused = [v.detail for v in verdict.violations if v.check == "answer-time"]
    assert [detail.split(" to ")[0] for detail in unexcused] == [
        "submit #2",
        "submit #3",
        "submit #4",
    ]
