"""Run the Pulumi program offline through ``pulumi.runtime.set_mocks`` and record what it declares.

Used by the unit tests and by ``python -m infra.preview``. The mock monitor is wrapped, as the
Pulumi SDK's own tests do, to keep what the engine would see: each resource's type, parent,
inputs, explicit dependencies and which input paths were sent as secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.config import PROJECT, SECRET_KEYS
from infra.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "staging", "prod")
PREVIEW_SECRET = "preview-only-not-a-secret"
PREVIEW_SECRETS = {
    key: PREVIEW_SECRET if key != "apiKeys" else '["preview"]' for key in SECRET_KEYS
}
"""Placeholder secrets of offline renders and engine checks: never real, never deployed."""
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_SIG_KEY = "4dabf18193072939515e22adb298388d"


@dataclass
class Registered:
    """One resource as the engine would have received it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]
    secret_paths: list[str]
    state: dict[str, Any]
    """What the mock engine answered: the inputs plus generated names."""


@dataclass
class RenderedStack:
    stack: str
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def by_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def kind(self, kind: str) -> list[Registered]:
        """Kubernetes objects of ``kind`` (built-in or custom)."""
        return [r for r in self.resources if r.custom and r.inputs.get("kind") == kind]

    def one(self, kind: str, name: str) -> Registered:
        matches = [r for r in self.kind(kind) if r.inputs.get("metadata", {}).get("name") == name]
        if len(matches) != 1:
            raise LookupError(f"expected one {kind} named {name!r}, found {len(matches)}")
        return matches[0]

    def named(self, name: str) -> Registered:
        return next(r for r in self.resources if r.name == name)

    def depends_on(self, dependent: Registered, dependency: Registered) -> bool:
        """True when ``dependent`` waits for ``dependency``: directly, or through a component
        it (or one of its ancestors) depends on, which the engine expands to its children."""
        by_urn = {r.urn: r for r in self.resources}
        waited: set[str] = set()
        node: Registered | None = dependent
        while node is not None:
            waited.update(node.dependencies)
            node = by_urn.get(node.parent)
        frontier = list(waited)
        while frontier:
            urn = frontier.pop()
            if urn == dependency.urn:
                return True
            children = [r.urn for r in self.resources if r.parent == urn]
            frontier.extend(c for c in children if c not in waited)
            waited.update(children)
        return False


def _secret_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return [path or "."]
        return [p for k, v in value.items() for p in _secret_paths(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secret_paths(v, f"{path}[{i}]")]
    return []


def _integral(value: Any) -> Any:
    """The protobuf wire format turns every number into a float; give integers back."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: mocks.Mocks) -> None:
        super().__init__(mock)
        self.registered: list[Registered] = []
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        # The SDK's mock monitor is untyped.
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            # Secrets arrive wrapped in a signature object; record where before unwrapping.
            inputs = rpc.deserialize_properties(request.object)
            self.registered.append(
                Registered(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=bool(request.custom),
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    inputs=_integral(_plain(inputs)),
                    secret_paths=_secret_paths(inputs),
                    state=_integral(_plain(rpc.deserialize_properties(response.object))),
                )
            )
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
        """A read resource (the program's reference to its own stack) is recorded too."""
        response = super().ReadResource(request)  # type: ignore[no-untyped-call]
        self.registered.append(
            Registered(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=True,
                parent=request.parent,
                dependencies=list(request.dependencies),
                inputs=_integral(_plain(rpc.deserialize_properties(request.properties))),
                secret_paths=[],
                state=_integral(_plain(rpc.deserialize_properties(response.properties))),
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.stack_outputs = _integral(_plain(rpc.deserialize_properties(request.outputs)))
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def _plain(value: Any) -> Any:
    """Strip the secret wrappers ``deserialize_properties`` may leave in place."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
LOCAL_ORGANIZATION = "organization"
"""The organization a local (file) backend reports, as the engine checks use."""


class PlatformMocks(mocks.Mocks):
    """Echo inputs back as state, filling in what the API server or Pulumi would add.
    ``deployed_outputs`` is what the stack's previous run exported (read by the program
    through a reference to its own stack); empty for a first deploy."""

    def __init__(self, deployed_outputs: dict[str, Any] | None = None) -> None:
        self.deployed_outputs = deployed_outputs or {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == STACK_REFERENCE_TYPE:
            state = {
                "name": args.inputs["name"],
                "outputs": self.deployed_outputs,
                "secretOutputNames": [],
            }
            return str(args.inputs["name"]), state
        state = dict(args.inputs)
        metadata = state.get("metadata")
        if isinstance(metadata, dict) and "name" not in metadata:
            # Pulumi auto-names objects without metadata.name: <resource name>-<random suffix>.
            suffix = hashlib.sha256(args.name.encode()).hexdigest()[:8]
            state["metadata"] = {**metadata, "name": f"{args.name}-{suffix}"}
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        return {}, []


def stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Project defaults from Pulumi.yaml overlaid with Pulumi.<stack>.yaml, keys without the
    project prefix, values as the stack file holds them (``secure`` values left out)."""
    project = yaml.safe_load((root / "Pulumi.yaml").read_text())
    values: dict[str, Any] = {}
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and "default" in spec:
            values[key.removeprefix(f"{PROJECT}:")] = spec["default"]
    stack_file = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    for key, value in (stack_file.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            continue
        values[key.removeprefix(f"{PROJECT}:")] = value
    return values


def as_config_string(value: Any) -> str:
    """How the Pulumi CLI hands a YAML config value to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def _ignore_repeated_config_errors(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """A ConfigError raised inside an ``apply`` fails the run once, then resurfaces from every
    Output future that shared it as "Future exception was never retrieved" noise; drop those
    copies and report anything else as asyncio would."""
    if isinstance(context.get("exception"), ConfigError):
        return
    loop.default_exception_handler(context)


def render(
    stack: str,
    values: dict[str, Any],
    secrets: dict[str, str] | None = None,
    deployed_outputs: dict[str, Any] | None = None,
) -> RenderedStack:
    """Run the program for ``stack`` with plain ``values`` and secret ``secrets``, as a
    first deploy or after one that exported ``deployed_outputs``."""
    from infra.program import define_stack  # late: the program reads config when run

    secrets = dict(PREVIEW_SECRETS) if secrets is None else secrets
    platform = PlatformMocks(deployed_outputs)
    monitor = RecordingMonitor(platform)
    settings.reset_options()
    mocks.set_mocks(
        platform,
        project=PROJECT,
        stack=stack,
        preview=False,
        monitor=monitor,
        organization=LOCAL_ORGANIZATION,
    )
    # set_mocks creates a bare root stack; drop it so run_in_stack creates the real one and
    # registers the exported outputs when the program ends.
    settings.ROOT.set(None)
    config = {f"{PROJECT}:{k}": as_config_string(v) for k, v in values.items()}
    config.update({f"{PROJECT}:{k}": v for k, v in secrets.items()})
    pulumi.runtime.set_all_config(config, [f"{PROJECT}:{k}" for k in secrets])
    loop = _ensure_event_loop()  # type: ignore[no-untyped-call]  # (the SDK helper is untyped)
    loop.set_exception_handler(_ignore_repeated_config_errors)
    _sync_await(run_in_stack(define_stack))
    return RenderedStack(stack, monitor.registered, monitor.stack_outputs)


def render_stack(stack: str) -> RenderedStack:
    """Render a committed stack file with placeholder secrets."""
    return render(stack, stack_config(stack))
