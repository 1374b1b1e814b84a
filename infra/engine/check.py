"""The engine check of one stack: ``pulumi preview`` and a render-mode ``pulumi up`` by the
real engine, its objects compared with the mocks' and validated like them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import parse_config
from infra.engine.compare import CHART_TYPE, Comparison, Key, compare, key_of
from infra.engine.workspace import EngineStack
from infra.manifests import ManifestValidator
from infra.render import PREVIEW_SECRETS, render, stack_config


@dataclass
class EngineReport:
    stack: str
    preview_steps: dict[str, int]
    up_steps: dict[str, int]
    state_resources: int
    rendered: list[dict[str, Any]]
    comparison: Comparison
    errors: list[str] = field(default_factory=list)

    def kinds(self) -> Counter[str]:
        return Counter(str(o.get("kind")) for o in self.rendered)


def steps(summary: Mapping[Any, int]) -> dict[str, int]:
    """An engine change summary with plain operation names (create, same, update, ...)."""
    return {str(getattr(op, "value", op)): count for op, count in summary.items()}


def chart_object_keys(state_resources: list[dict[str, Any]]) -> set[Key]:
    """Keys of the Kubernetes objects the engine registered as children of a Helm chart."""
    charts = {r["urn"] for r in state_resources if r.get("type") == CHART_TYPE}
    return {
        key_of(r.get("outputs") or {})
        for r in state_resources
        if r.get("parent") in charts and r.get("custom")
    }


def mock_objects(stack: str, overrides: Mapping[str, Any]) -> tuple[list[dict[str, Any]], set[Key]]:
    """What the mocks render for the same config: objects, and the keys of auto-named ones."""
    from infra.preview import manifest_of

    rendered = render(stack, {**stack_config(stack), **overrides}, dict(PREVIEW_SECRETS))
    objects, auto_named = [], set()
    for resource in rendered.resources:
        if not resource.custom or "kind" not in resource.inputs:
            continue
        manifest = manifest_of(resource)
        objects.append(manifest)
        if "name" not in (resource.inputs.get("metadata") or {}):
            auto_named.add(key_of(manifest))
    return objects, auto_named


def check_stack(
    stack: str,
    scratch: Path,
    overrides: Mapping[str, Any],
    on_output: Callable[[str], Any] | None = None,
    program: Callable[[], None] | None = None,
) -> tuple[EngineReport, EngineStack]:
    """Preview and up ``stack`` (with config ``overrides``) by the engine; compare, validate.
    The returned EngineStack is deployed (in render mode): the caller may go on with it."""
    engine = EngineStack(
        stack,
        scratch,
        overrides=overrides,
        secret_values=PREVIEW_SECRETS,
        on_output=on_output,
        program=program,
    )
    preview = engine.preview()
    up = engine.up()
    state = engine.state_resources()
    rendered = engine.rendered()
    objects, auto_named = mock_objects(stack, overrides)
    report = EngineReport(
        stack=stack,
        preview_steps=steps(preview.change_summary),
        up_steps=steps(up.summary.resource_changes or {}),
        state_resources=len(state),
        rendered=rendered,
        comparison=compare(rendered, chart_object_keys(state), objects, auto_named),
    )
    validator = ManifestValidator(parse_config({**stack_config(stack), **overrides}))
    for obj in rendered:
        for error in validator.validate(obj):
            report.errors.append(f"{obj.get('kind')} {obj['metadata'].get('name')}: {error}")
    return report, engine
