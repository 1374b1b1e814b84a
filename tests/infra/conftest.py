"""Shared fixtures: each stack rendered once through the Pulumi mocks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.render import STACKS, RenderedStack, render, render_stack, stack_config

_cache: dict[str, RenderedStack] = {}


def _open_loops() -> list[asyncio.AbstractEventLoop]:
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()
    ]


@pytest.fixture(scope="package", autouse=True)
def close_pulumi_event_loops() -> Iterator[None]:
    """Pulumi's synchronous helpers open an event loop whenever none is current and never
    close it; left to the garbage collector, each one ends the session with a ResourceWarning
    (an error here). Give them one to use, and close every loop the infra tests opened once
    they are done. (A current loop is also needed because an earlier `asyncio.run` leaves
    none, and Pulumi's helpers then fail with "There is no current event loop".)"""
    before = {id(loop) for loop in _open_loops()}
    asyncio.set_event_loop(asyncio.new_event_loop())
    yield
    for loop in _open_loops():
        if id(loop) not in before and not loop.is_running():
            loop.close()
    asyncio.set_event_loop(None)


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

    def run(
        secrets: dict[str, str] | None = None,
        deployed_outputs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> RenderedStack:
        return render("dev", {**stack_config("dev"), **overrides}, secrets, deployed_outputs)

    return run
