"""What applies to each task: the catalog's declarations with the settings' overrides.

API and worker both read them from here, so a rate limit or a schedule set in settings means
the same everywhere."""

from __future__ import annotations

from services.core.catalog import Catalog, TaskSpec
from services.core.limits import RateLimit
from services.core.schedules import Schedule
from services.core.settings import Settings
from services.core.topics import task_topics


def rate_limit(spec: TaskSpec, settings: Settings) -> RateLimit | None:
    override = settings.rate_limits.get(spec.name)
    if override is None:
        return spec.rate_limit
    return RateLimit.parse(override) if override.strip() else None


def schedules(catalog: Catalog, settings: Settings) -> list[Schedule]:
    """Every schedule, the catalog's then the settings', each checked: a known task, a payload
    its model accepts, a priority it has a topic for, a unique name."""
    found: list[Schedule] = [entry for spec in catalog.specs() for entry in spec.schedules]
    for i, entry in enumerate(settings.schedules):
        if entry.task is None:
            raise ValueError(
                f'KT_SCHEDULES[{i}] names no task; add "task": one of {catalog.names()}'
            )
        spec = catalog.get(entry.task)
        spec.payload_model.model_validate(entry.payload)
        found.append(entry if entry.name else entry.model_copy(update={"name": f"settings-{i}"}))
    names = [entry.key for entry in found]
    for entry in found:
        if names.count(entry.key) > 1:
            raise ValueError(f"schedule name {entry.key!r} is used twice; give each a unique name")
        spec = catalog.get(entry.task or "")
        if entry.priority != "default" and not spec.prioritized:
            raise ValueError(
                f"schedule {entry.key!r} asks for priority {entry.priority} but task "
                f"{spec.name!r} has no priority topics; declare it with prioritized=True"
            )
    return found


def all_task_topics(catalog: Catalog, settings: Settings) -> list[str]:
    """Every task topic the workers consume, per task: high, default, low (or default)."""
    return [
        topic
        for spec in catalog.specs()
        for topic in task_topics(settings.namespace, spec.name, prioritized=spec.prioritized)
    ]
