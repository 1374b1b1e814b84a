"""Shared fixtures: each stack rendered once through the Pulumi mocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.render import STACKS, RenderedStack, render, render_stack, stack_config

_cache: dict[str, RenderedStack] = {}


def rendered_stack(stack: str) -> RenderedStack:
    if stack not in _cache:
        _cache[stack] = render_stack(stack)
    return _cache[stack]


@pytest.fixture
def committed() -> Callable[[str], RenderedStack]:
    """A committed stack file by name, rendered once per session."""
    return rendered_stack


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> RenderedStack:
    """Every committed stack file, rendered with placeholder secrets."""
    return rendered_stack(request.param)


@pytest.fixture
def render_dev_with() -> Callable[..., RenderedStack]:
    """Render the dev stack with some keys overridden (camelCase config keys)."""

    def run(secrets: dict[str, str] | None = None, **overrides: Any) -> RenderedStack:
        return render("dev", {**stack_config("dev"), **overrides}, secrets)

    return run
