"""The task catalog: every task's name, payload model, topic and policies.

The API imports it to validate payloads and the worker to run them, so the two cannot drift;
``infra/`` reads it to declare one topic per task.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from services.core.errors import UnknownTaskError
from services.core.limits import ConcurrencyLimit, RateLimit
from services.core.schedules import Schedule

_JITTER = random.Random()


class RetryPolicy(BaseModel):
    """When and how a failed attempt is tried again (Celery's autoretry_for / retry_backoff)."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=1, ge=1, le=100)
    """Attempts in all, the first included; 1 means no retry."""
    backoff_seconds: float = Field(default=1.0, ge=0)
    """Delay before the second attempt; doubled for each later one."""
    backoff_max_seconds: float = Field(default=300.0, ge=0)
    jitter: bool = True
    """Spread each delay uniformly over [delay/2, delay] so retries do not arrive in waves."""
    retry_on: tuple[str, ...] = ("Exception",)
    """Names of exception classes (or their bases) that retry; others fail at once."""

    def delay_before(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before ``attempt`` (2 for the first retry)."""
        delay = min(self.backoff_seconds * 2.0 ** max(attempt - 2, 0), self.backoff_max_seconds)
        if self.jitter:
            delay = (rng or _JITTER).uniform(delay / 2, delay)
        return delay

    def retries(self, error: BaseException, *, attempt: int) -> bool:
        """Whether a failure of ``attempt`` with ``error`` is tried again."""
        if attempt >= self.max_attempts:
            return False
        names = {cls.__name__ for cls in type(error).__mro__}
        return any(name in names for name in self.retry_on)


NO_RETRY = RetryPolicy()


class TaskContext(Protocol):
    """What task code may ask of the worker running it."""

    @property
    def task_id(self) -> str: ...

    @property
    def attempt(self) -> int:
        """1 for the first run; raised for every retry and every redelivery."""
        ...

    async def cancelled(self) -> bool:
        """Whether a client cancelled this task; progress() raises TaskCancelled by itself."""
        ...

    def progress(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> Awaitable[None]:
        """Report progress; await it from async tasks. Sync tasks use ``progress_sync``."""
        ...

    def progress_sync(
        self, percent: float, message: str = "", meta: dict[str, JsonValue] | None = None
    ) -> None: ...

    def cancelled_sync(self) -> bool: ...


TASK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
"""Task names become part of Kafka topic names and Kubernetes resource names."""

TaskFunction = Callable[[Any, TaskContext], Any]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    payload_model: type[BaseModel]
    function: TaskFunction
    is_async: bool
    timeout_seconds: float | None = None
    retry: RetryPolicy = NO_RETRY
    description: str = ""
    schedules: tuple[Schedule, ...] = ()
    rate_limit: RateLimit | None = None
    concurrency: ConcurrencyLimit | None = None
    prioritized: bool = False
    """It has a topic per priority (high, default, low); otherwise only the default one, and
    a submission with another priority is refused."""


@dataclass
class Catalog:
    """Holds task specs by name. ``@catalog.task()`` registers a function."""

    _specs: dict[str, TaskSpec] = field(default_factory=dict)

    def task(
        self,
        name: str | None = None,
        *,
        timeout_seconds: float | None = None,
        retry: RetryPolicy = NO_RETRY,
        schedule: Schedule | list[Schedule] | None = None,
        rate_limit: str | None = None,
        concurrency: ConcurrencyLimit | None = None,
        prioritized: bool = False,
    ) -> Callable[[TaskFunction], TaskFunction]:
        """Register a task; its first parameter's annotation is the payload model.

        ``schedule``: one or more periodic schedules (their payloads checked here);
        ``rate_limit``: Celery's notation, e.g. ``"100/m"``; ``concurrency``: at most N running
        per value of a payload field; ``prioritized``: a topic per priority."""

        def register(function: TaskFunction) -> TaskFunction:
            task_name = name or function.__name__
            if not TASK_NAME.fullmatch(task_name):
                raise ValueError(f"task name {task_name!r} must match {TASK_NAME.pattern}")
            if task_name in self._specs:
                raise ValueError(f"task {task_name!r} is registered twice")
            model = _payload_model_of(function)
            if concurrency is not None and concurrency.key not in model.model_fields:
                raise ValueError(
                    f"task {task_name!r}: concurrency key {concurrency.key!r} is not a field of "
                    f"{model.__name__} (fields: {', '.join(model.model_fields)})"
                )
            declared = (
                []
                if schedule is None
                else [schedule]
                if isinstance(schedule, Schedule)
                else schedule
            )
            schedules = tuple(
                entry.model_copy(
                    update={
                        "task": task_name,
                        "name": entry.name or (task_name if i == 0 else f"{task_name}-{i}"),
                    }
                )
                for i, entry in enumerate(declared)
            )
            for entry in schedules:
                model.model_validate(entry.payload)  # a wrong payload fails at import, not at 3 am
            self._specs[task_name] = TaskSpec(
                name=task_name,
                payload_model=model,
                function=function,
                is_async=inspect.iscoroutinefunction(function),
                timeout_seconds=timeout_seconds,
                retry=retry,
                description=inspect.getdoc(function) or "",
                schedules=schedules,
                rate_limit=RateLimit.parse(rate_limit) if rate_limit else None,
                concurrency=concurrency,
                prioritized=prioritized,
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
