"""The checker: once the faults healed and the platform settled, read the outcome of every
submission and every record, and name each violation with its task ids and the faults
around it.

What must hold (README, Guarantees):
- every submission answered 202 ends in exactly one terminal state, the right one for its
  task (noop, sleep, flaky and overrun COMPLETE with their results; fail FAILURE), unless
  a cancellation of it was accepted (then CANCELLED);
- no record ever left a terminal state, and its versions rise one by one (event history);
- no task had more failed attempts than its retry policy allows;
- no delayed task (a countdown) started before it was due;
- the dead-letter topic holds exactly the tasks that ended FAILURE;
- no PENDING, PROGRESS or RETRY record is left;
- a submission answered 4xx or 503, or refused before it reached an API, left nothing; one
  that got no answer (its API process was killed) or a 504 left nothing or ran to its end;
- every Idempotency-Key names one task among the 202 answers;
- the listing indexes and /dashboard/summary agree with the records;
- no process died that the nemesis did not kill;
- every answer came within the configured backend timeouts plus a margin.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from chaos.nemesis import Injected
from chaos.snapshot import Snapshot
from chaos.workload import Op
from services.core.models import TaskRecord
from services.core.states import TaskState
from services.tasks import catalog

ANSWER_MARGIN_SECONDS = 3.0
"""Room above the backend timeouts for a loaded 2-core machine (event loop, GC, scheduling)."""


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str
    task_ids: tuple[str, ...] = ()
    at: float | None = None
    """Seconds since the run started, when it can be placed in time."""


@dataclass(frozen=True)
class ApiKill:
    api: str
    struck: float
    """When SIGKILL went out."""
    gone: float
    """When the process was seen to have exited. Until then its listening socket can still
    take a connection that the dying process then drops: no answer, not a refusal."""

    def cut(self, op: Op) -> bool:
        """Whether ``op`` was on its way to this API at some moment while it was dying."""
        answered = op.answered_at if op.answered_at is not None else float("inf")
        return op.api == self.api and op.sent_at <= self.gone and answered >= self.struck


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, float | int] = field(default_factory=dict)

    def fail(self, check: str, detail: str, *task_ids: str, at: float | None = None) -> None:
        self.violations.append(Violation(check, detail, tuple(task_ids), at))


EXPECTED: dict[str, TaskState] = {
    "noop": TaskState.COMPLETE,
    "sleep": TaskState.COMPLETE,
    "flaky": TaskState.COMPLETE,
    "overrun": TaskState.COMPLETE,
    "fail": TaskState.FAILURE,
}


def check(
    ops: list[Op],
    snapshot: Snapshot,
    *,
    bounds: dict[str, float],
    deaths: list[tuple[float, str, str]],
    api_kills: list[ApiKill],
    settled: bool,
) -> Verdict:
    verdict = Verdict()
    records = snapshot.records
    accepted = {op.task_id: op for op in ops if op.kind == "submit" and op.status == 202}
    cancels: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind == "cancel" and op.target:
            cancels[op.target].append(op)

    if not settled:
        verdict.fail("settled", "tasks were still live when the settle time ran out")

    for task_id, op in accepted.items():
        assert task_id is not None
        assert op.task is not None
        record = records.get(task_id)
        if record is None:
            verdict.fail("accepted-kept", "answered 202, no record left", task_id, at=op.sent_at)
            continue
        _check_outcome(verdict, op, record, cancels.get(task_id, []))

    for task_id, history in snapshot.histories.items():
        _check_history(verdict, task_id, history)
        _check_not_early(verdict, task_id, history)

    _check_dead_letters(verdict, snapshot)
    _check_leftovers(verdict, ops, snapshot, accepted)
    _check_keys(verdict, ops)
    _check_indexes(verdict, snapshot)
    for at, target, tail in deaths:
        verdict.fail("no-unexpected-death", f"{target} died on its own:\n{tail}", at=at)
    _check_answer_times(verdict, ops, bounds, api_kills)
    return verdict


def _check_outcome(verdict: Verdict, op: Op, record: TaskRecord, cancels: list[Op]) -> None:
    task_id, task = str(record.id), op.task or ""
    if not record.status.is_terminal:
        verdict.fail("terminal", f"{task} left {record.status}", task_id, at=op.sent_at)
        return
    accepted_cancels = [c for c in cancels if c.status == 200]
    if accepted_cancels:
        if record.status is not TaskState.CANCELLED:
            verdict.fail(
                "cancel-kept",
                f"cancel answered 200 but the task ended {record.status}",
                task_id,
                at=accepted_cancels[0].sent_at,
            )
        return
    if record.status is TaskState.CANCELLED:
        # Allowed only if some cancellation's fate was unknown to its client.
        if not any(c.status not in (200, 404, 409) for c in cancels):
            answers = ", ".join(str(c.status) for c in cancels) or "no cancellation"
            verdict.fail("cancel-kept", f"ended CANCELLED after {answers}", task_id)
        return
    expected = EXPECTED[task]
    if record.status is not expected:
        error = record.error.type if record.error else ""
        verdict.fail(
            "right-outcome", f"{task} ended {record.status} ({error})", task_id, at=op.sent_at
        )
        return
    if record.status is TaskState.COMPLETE and not _right_result(op, record):
        verdict.fail("right-result", f"{task} result {record.result!r}", task_id, at=op.sent_at)


def _right_result(op: Op, record: TaskRecord) -> bool:
    payload = op.payload or {}
    result = record.result
    if op.task == "noop":
        return bool(result == payload.get("echo"))
    if op.task == "sleep":
        return isinstance(result, dict) and result.get("slept_seconds") == payload["seconds"]
    if op.task == "flaky":
        return isinstance(result, dict) and _int(result["succeeded_on_attempt"]) > int(
            payload["fail_times"]
        )
    if op.task == "overrun":
        return isinstance(result, dict) and _int(result["finished_on_attempt"]) > 1
    return True


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _check_history(verdict: Verdict, task_id: str, history: list[TaskRecord]) -> None:
    if not history:
        return
    versions = [record.version for record in history]
    if versions != list(range(versions[0], versions[0] + len(versions))):
        verdict.fail("history", f"versions out of order: {versions}", task_id)
    for earlier, later in itertools.pairwise(history):
        if earlier.status.is_terminal:
            verdict.fail(
                "final-is-final", f"{earlier.status} was followed by {later.status}", task_id
            )
            break
    failed_attempts = sum(1 for r in history if r.status is TaskState.RETRY)
    failed_attempts += 1 if history[-1].status is TaskState.FAILURE else 0
    policy = catalog.get(history[0].task).retry
    if failed_attempts > policy.max_attempts:
        verdict.fail(
            "retry-policy",
            f"{failed_attempts} failed attempts, the policy allows {policy.max_attempts}",
            task_id,
        )


def _check_not_early(verdict: Verdict, task_id: str, history: list[TaskRecord]) -> None:
    """A task held back until ``due_at`` never starts before then (the same machine's clock
    writes both times)."""
    due = history[0].due_at if history else None
    start = next((r.updated_at for r in history if r.status is TaskState.PROGRESS), None)
    if due is not None and start is not None and start < due:
        verdict.fail(
            "not-early",
            f"started {(due - start).total_seconds():.3f} s before it was due",
            task_id,
        )


def _check_dead_letters(verdict: Verdict, snapshot: Snapshot) -> None:
    lettered = Counter(str(letter.message.id) for letter in snapshot.dead_letters)
    failed = {i for i, r in snapshot.records.items() if r.status is TaskState.FAILURE}
    missing = failed - set(lettered)
    extra = set(lettered) - failed
    if missing:
        verdict.fail("dead-letters", "FAILURE without a dead letter", *sorted(missing))
    if extra:
        verdict.fail("dead-letters", "dead letter for a task that did not fail", *sorted(extra))
    verdict.figures["dead letters written twice"] = sum(1 for n in lettered.values() if n > 1)


def _check_leftovers(
    verdict: Verdict, ops: list[Op], snapshot: Snapshot, accepted: dict[str | None, Op]
) -> None:
    """Every record is terminal, and belongs to a 202 or to a submission whose fate its
    client could not know (no answer, or a 504)."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind == "submit" and op.key:
            by_key[op.key].append(op)
    for task_id, record in snapshot.records.items():
        if not record.status.is_terminal:
            verdict.fail("nothing-live-left", f"a {record.task} record is {record.status}", task_id)
        if task_id in accepted:
            continue
        key = snapshot.keys_by_task.get(task_id)
        answers = by_key.get(key, []) if key else []
        if not answers:
            verdict.fail("no-orphans", f"a {record.task} record no submission made", task_id)
        elif any(op.status == 202 for op in answers):
            verdict.fail("one-task-per-key", f"{key} has another task answered 202", task_id)
        elif all(op.failure == "refused" or 400 <= (op.status or 0) <= 503 for op in answers):
            refused = ", ".join(str(op.status or op.failure) for op in answers)
            verdict.fail(
                "refused-leaves-nothing",
                f"answered {refused}, yet a {record.status} record exists",
                task_id,
                at=answers[0].sent_at,
            )


def _check_keys(verdict: Verdict, ops: list[Op]) -> None:
    tasks_by_key: dict[str, set[str]] = defaultdict(set)
    for op in ops:
        if op.kind == "submit" and op.status == 202 and op.key and op.task_id:
            tasks_by_key[op.key].add(op.task_id)
    for key, task_ids in tasks_by_key.items():
        if len(task_ids) > 1:
            verdict.fail(
                "one-task-per-key", f"{key} answered with {len(task_ids)} tasks", *task_ids
            )


def _check_indexes(verdict: Verdict, snapshot: Snapshot) -> None:
    by_state = Counter(record.status.value for record in snapshot.records.values())
    by_task_state: Counter[tuple[str, str]] = Counter(
        (record.task, record.status.value) for record in snapshot.records.values()
    )
    for state in TaskState:
        if snapshot.index_counts.get(state.value, 0) != by_state.get(state.value, 0):
            verdict.fail(
                "indexes",
                f"index of {state} holds {snapshot.index_counts.get(state.value, 0)}, "
                f"records {by_state.get(state.value, 0)}",
            )
        for task in catalog.names():
            shown = snapshot.summary.get(task, {}).get(state.value, 0)
            if shown != by_task_state.get((task, state.value), 0):
                verdict.fail(
                    "dashboard-summary",
                    f"summary shows {shown} {task} {state}, records "
                    f"{by_task_state.get((task, state.value), 0)}",
                )


def _check_answer_times(
    verdict: Verdict, ops: list[Op], bounds: dict[str, float], api_kills: list[ApiKill]
) -> None:
    for op in ops:
        if op.failure == "refused":
            continue  # nothing reached an API
        if op.status is not None and op.status >= 500 and op.status not in (503, 504):
            verdict.fail("no-500", f"{op.kind} #{op.number} answered {op.status}", at=op.sent_at)
        killed = any(kill.cut(op) for kill in api_kills)
        if op.failure == "no-answer" and killed:
            continue  # its API process was killed under it: no answer is the answer
        limit = bounds[op.kind] + ANSWER_MARGIN_SECONDS
        seconds = op.seconds
        if seconds is None or seconds > limit or op.failure == "no-answer":
            took = f"{seconds:.1f} s" if seconds is not None else "never answered"
            verdict.fail(
                "answer-time",
                f"{op.kind} #{op.number} to {op.api}: {took} ({op.status or op.failure}); "
                f"the bound is {limit:.1f} s",
                *([op.task_id] if op.task_id else []),
                at=op.sent_at,
            )


def faults_around(injected: list[Injected], at: float | None, *, margin: float = 15.0) -> list[str]:
    """The faults active within ``margin`` seconds of a moment."""
    if at is None:
        return []
    return [
        item.fault.describe()
        for item in injected
        if item.started is not None
        and item.started - margin <= at <= (item.healed or item.started) + margin
    ]
