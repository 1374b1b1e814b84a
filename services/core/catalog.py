"""The task catalog: every task's name, payload model, topic and policies.

The API imports it to validate payloads and the worker to run them, so the two cannot drift;
``infra/`` reads it to declare one topic per task.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, get_type_hints

from pydantic import BaseModel, JsonValue

from services.core.errors import UnknownTaskError


class TaskContext(Protocol):
    """What task code may ask of the worker running it."""

    @property
    def task_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    def progress(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> Awaitable[None]:
        """Report progress; await it from async tasks. Sync tasks use ``progress_sync``."""
        ...

    def progress_sync(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> None: ...


TaskFunction = Callable[[Any, TaskContext], Any]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    payload_model: type[BaseModel]
    function: TaskFunction
    is_async: bool
    timeout_seconds: float | None = None
    description: str = ""


@dataclass
class Catalog:
    """Holds task specs by name. ``@catalog.task()`` registers a function."""

    _specs: dict[str, TaskSpec] = field(default_factory=dict)

    def task(
        self, name: str | None = None, *, timeout_seconds: float | None = None
    ) -> Callable[[TaskFunction], TaskFunction]:
        def register(function: TaskFunction) -> TaskFunction:
            task_name = name or function.__name__
            if task_name in self._specs:
                raise ValueError(f"task {task_name!r} is registered twice")
            self._specs[task_name] = TaskSpec(
                name=task_name,
                payload_model=_payload_model_of(function),
                function=function,
                is_async=inspect.iscoroutinefunction(function),
                timeout_seconds=timeout_seconds,
                description=inspect.getdoc(function) or "",
            )
            return function

        return register

    def get(self, name: str) -> TaskSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownTaskError(name, known=self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[TaskSpec]:
        return [self._specs[name] for name in self.names()]


def _payload_model_of(function: TaskFunction) -> type[BaseModel]:
    """The pydantic model annotated on the task function's first parameter."""
    parameters = list(inspect.signature(function).parameters)
    hints = get_type_hints(function)
    model = hints.get(parameters[0]) if parameters else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(
            f"task {function.__qualname__}: its first parameter must be annotated with a "
            "pydantic model (the payload)"
        )
    return model
