"""The worker ScaledObject a stack deploys, as the infra program renders it, pointed at a
local Kafka: ``bootstrapServers`` is rewritten in every trigger, and the trigger's login to
the stack's Kafka (``tls``, ``sasl`` and the ``authenticationRef`` to the KEDA user's
TriggerAuthentication) is dropped, since the local Kafka this check reads is a plain one.
None of those change the lag arithmetic this check compares; what KEDA's login is allowed
to read is proven by the secure stack's tests (tests/devstack, tests/system)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import gc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.config import parse_config
from infra.preview import manifest_of
from infra.render import render, stack_config

STRIMZI_TOPIC_KIND = "KafkaTopic"
LOGIN_METADATA = ("tls", "sasl")
"""Trigger metadata that only says how to log in to the stack's Kafka."""


@dataclass(frozen=True)
class StackScaledObject:
    stack: str
    manifest: dict[str, Any]
    """The ScaledObject, ``bootstrapServers`` rewritten and the login dropped."""
    topic_partitions: dict[str, int]
    """Partitions of every topic the triggers read, from the stack's KafkaTopic objects."""
    chart_version: str
    """The KEDA chart version the stack deploys (the scaler is built at this version)."""

    @property
    def topics(self) -> list[str]:
        return [str(t["metadata"]["topic"]) for t in self.manifest["spec"]["triggers"]]


def stack_scaled_object(
    stack: str, bootstrap_servers: str, overrides: Mapping[str, Any] | None = None
) -> StackScaledObject:
    """Render ``stack`` (its committed config, plus ``overrides`` such as a test's own
    ``taskNamespace``) and return its worker ScaledObject aimed at ``bootstrap_servers``."""
    values = {**stack_config(stack), **(overrides or {})}
    rendered = _render_isolated(stack, values)
    scaled_objects = [manifest_of(r) for r in rendered.kind("ScaledObject")]
    if len(scaled_objects) != 1:
        raise LookupError(f"stack {stack} renders {len(scaled_objects)} ScaledObjects, not 1")
    manifest = pointed_at(scaled_objects[0], bootstrap_servers)
    topics = {
        str(m["spec"].get("topicName") or m["metadata"]["name"]): int(m["spec"]["partitions"])
        for m in (manifest_of(r) for r in rendered.kind(STRIMZI_TOPIC_KIND))
    }
    consumed = [str(t["metadata"]["topic"]) for t in manifest["spec"]["triggers"]]
    missing = [topic for topic in consumed if topic not in topics]
    if missing:
        raise LookupError(f"stack {stack} declares no KafkaTopic for {missing}")
    return StackScaledObject(
        stack=stack,
        manifest=manifest,
        topic_partitions={topic: topics[topic] for topic in consumed},
        chart_version=parse_config(values).keda_chart_version,
    )


def pointed_at(scaled_object: Mapping[str, Any], bootstrap_servers: str) -> dict[str, Any]:
    """A copy of ``scaled_object`` whose triggers read ``bootstrap_servers`` (a plain
    listener) without logging in; nothing else changes."""
    aimed = copy.deepcopy(dict(scaled_object))
    for trigger in aimed["spec"]["triggers"]:
        trigger["metadata"]["bootstrapServers"] = bootstrap_servers
        for login in LOGIN_METADATA:
            trigger["metadata"].pop(login, None)
        trigger.pop("authenticationRef", None)
    return aimed


def chart_version(stack: str) -> str:
    return parse_config(stack_config(stack)).keda_chart_version


def _render_isolated(stack: str, values: dict[str, Any]) -> Any:
    """Run the Pulumi program in a thread of our own with a fresh event loop, and close every
    loop it opened before it lets go of them.

    Pulumi's runtime drives the loop it finds, and its mock monitor opens one more loop in each
    worker thread of that loop's executor and never closes it (as tests/infra/conftest.py
    notes). Those are still reachable until the executor shuts down; closed here first, none
    is left for the garbage collector to report as a ResourceWarning, and the caller's own
    loop (if any) is untouched."""

    def in_thread() -> Any:
        before = {id(loop) for loop in _live_loops()}
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return render(stack, values)
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            for opened in _live_loops():
                if id(opened) not in before and opened is not loop and not opened.is_running():
                    opened.close()
            asyncio.set_event_loop(None)
            loop.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(in_thread).result()


def _live_loops() -> list[asyncio.AbstractEventLoop]:
    """Open event loops that are still referenced (no collection: a collected one would
    already have warned)."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()
    ]
