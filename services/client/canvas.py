"""A small typed builder for workflows, in Celery's canvas words.

    flow = chain(sig("add", {"x": 1}), sig("add", {"x": 2}))
    flow = group(sig("resize", {"url": u}) for u in urls)
    flow = chord(group(sig("add", {"x": i}) for i in range(10)), sig("tally"))

Each returns the ``WorkflowSpec`` that ``submit_workflow`` sends to ``POST /workflows``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.core.workflows import Signature, WorkflowKind, WorkflowSpec


def sig(
    task: str, payload: dict[str, Any] | None = None, *, previous_as: str | None = "previous"
) -> Signature:
    """One task of a workflow. In a chain, the previous link's result goes into the payload
    field ``previous_as`` (None: it takes none, Celery's immutable ``.si()``)."""
    return Signature(task=task, payload=payload or {}, previous_as=previous_as)


def chain(*links: Signature | Iterable[Signature]) -> WorkflowSpec:
    """Run the links one after the other, each getting the previous result."""
    return WorkflowSpec(kind=WorkflowKind.CHAIN, tasks=_flat(links))


def group(*members: Signature | Iterable[Signature]) -> WorkflowSpec:
    """Run the members in parallel; the results come in member order."""
    return WorkflowSpec(kind=WorkflowKind.GROUP, tasks=_flat(members))


def chord(
    members: WorkflowSpec | Iterable[Signature],
    callback: Signature,
    *,
    results_as: str = "results",
    call_on_failure: bool = False,
) -> WorkflowSpec:
    """Run the members in parallel, then ``callback`` with all results in ``results_as``.
    A failed member means no callback, unless ``call_on_failure`` (then null in its place)."""
    tasks = members.tasks if isinstance(members, WorkflowSpec) else list(members)
    return WorkflowSpec(
        kind=WorkflowKind.CHORD,
        tasks=tasks,
        callback=callback,
        results_as=results_as,
        call_on_failure=call_on_failure,
    )


def _flat(items: tuple[Signature | Iterable[Signature], ...]) -> list[Signature]:
    flat: list[Signature] = []
    for item in items:
        flat.extend([item] if isinstance(item, Signature) else item)
    return flat
