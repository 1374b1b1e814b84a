"""Preview every stack without a cluster: through the mocks, and through the real engine.

    uv run python -m infra.preview [stack ...] [--engine] [--local-charts DIR]

Mocks: writes ``build/manifests/<stack>/``, one YAML file per Kubernetes object the program
declares, plus ``charts.yaml`` (the Helm charts with version and values). Built-in kinds are
validated against the official Kubernetes JSON schemas (kubernetes-validate), custom
resources against the real CRDs of the versions the stack deploys (infra.crds).

``--engine`` (what ``make preview`` runs): the real Pulumi CLI and Kubernetes provider (built by
``make engine``) also run ``pulumi preview`` and a render-mode ``pulumi up`` of each stack;
the objects the provider writes (charts' objects included) are compared with the mocks' and
validated the same way. Charts come from their configured sources, so without access to the
chart registries pass ``--local-charts`` (a mirror folder, or tests/infra/charts).

Exits 1 on any schema error or unexplained difference, so CI can gate on it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from infra.charts import local_chart_overrides
from infra.config import parse_config
from infra.errors import ConfigError
from infra.manifests import ManifestValidator
from infra.render import (
    REPO_ROOT,
    STACK_REFERENCE_TYPE,
    STACKS,
    Registered,
    RenderedStack,
    render,
    stack_config,
)

if TYPE_CHECKING:
    from infra.engine.check import EngineReport

OUTPUT_ROOT = REPO_ROOT / "build" / "manifests"
HELM_CHART_TYPE = "kubernetes:helm.sh/v4:Chart"


@dataclass
class StackReport:
    stack: str
    rendered: RenderedStack
    errors: list[str] = field(default_factory=list)
    written: int = 0


def manifest_of(resource: Registered) -> dict[str, Any]:
    """The Kubernetes object as the provider would send it: Pulumi-only keys dropped and
    auto-generated names filled in."""
    fields = {k: v for k, v in resource.state.items() if not k.startswith("__")}
    head: dict[str, Any] = {
        k: fields.pop(k) for k in ("apiVersion", "kind", "metadata") if k in fields
    }
    return {**head, **fields}


def _file_name(manifest: dict[str, Any]) -> str:
    """Stable across runs (registration order is not), grouped by namespace then kind."""
    metadata = manifest.get("metadata", {})
    namespace = metadata.get("namespace") or "_cluster"
    return f"{namespace}--{manifest['kind'].lower()}--{metadata.get('name')}.yaml"


def check_stack(
    stack: str, out_dir: Path | None, overrides: dict[str, Any] | None = None
) -> StackReport:
    values = {**stack_config(stack), **(overrides or {})}
    report = StackReport(stack, render(stack, values))
    validator = ManifestValidator(parse_config(values))
    if out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
    index = 0
    charts = []
    for resource in report.rendered.resources:
        if resource.type == HELM_CHART_TYPE:
            charts.append({"resource": resource.name, **manifest_of(resource)})
            continue
        if not resource.custom or resource.type == STACK_REFERENCE_TYPE:
            continue
        manifest = manifest_of(resource)
        for error in validator.validate(manifest):
            report.errors.append(f"{manifest.get('kind')} {resource.name}: {error}")
        index += 1
        if out_dir is not None:
            # Secret values are redacted: the files are for review, not for kubectl apply.
            for path in resource.secret_paths:
                _redact(manifest, path)
            (out_dir / _file_name(manifest)).write_text(yaml.safe_dump(manifest, sort_keys=False))
    if out_dir is not None:
        (out_dir / "charts.yaml").write_text(yaml.safe_dump_all(charts, sort_keys=False))
    report.written = index
    return report


def _redact(manifest: dict[str, Any], path: str) -> None:
    node: Any = manifest
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.get(part, {})
    if isinstance(node, dict) and parts[-1] in node:
        value = node[parts[-1]]
        node[parts[-1]] = {k: "<secret>" for k in value} if isinstance(value, dict) else "<secret>"


def wait_graph(rendered: RenderedStack) -> dict[str, set[str]]:
    """For each Kubernetes object or chart, what the engine makes it wait for. A dependency on
    a component stands for all of its children; namespaces and the read of the stack's own
    outputs (prerequisites of everything) are left out so the summary shows the ordering
    that matters."""
    by_urn = {r.urn: r for r in rendered.resources}
    children: dict[str, list[str]] = {}
    for r in rendered.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def is_leaf(r: Registered) -> bool:
        return r.custom or r.type == HELM_CHART_TYPE

    def leaves(urn: str) -> list[str]:
        node = by_urn.get(urn)
        if node is None or is_leaf(node):
            return [urn]
        return [leaf for child in children.get(urn, []) for leaf in leaves(child)]

    graph: dict[str, set[str]] = {}
    for r in rendered.resources:
        if not is_leaf(r):
            continue
        waits: set[str] = set()
        node: Registered | None = r
        while node is not None:  # the dependencies of every enclosing component count too
            for dep in node.dependencies:
                waits.update(leaves(dep))
            node = by_urn.get(node.parent)
        graph[r.urn] = {
            u
            for u in waits
            if u in by_urn
            and by_urn[u].inputs.get("kind") != "Namespace"
            and by_urn[u].type != STACK_REFERENCE_TYPE
        }
    return graph


def dependency_chain(rendered: RenderedStack) -> list[str]:
    """The longest chain of waits in the stack (ties broken by name, for a stable summary)."""
    by_urn = {r.urn: r for r in rendered.resources}
    graph = wait_graph(rendered)
    longest: dict[str, list[str]] = {}

    def chain(urn: str) -> list[str]:
        if urn not in longest:
            longest[urn] = []  # guards against cycles (the engine would reject them anyway)
            deps = sorted(graph.get(urn, ()))
            best = max((chain(dep) for dep in deps), key=len, default=[])
            longest[urn] = [*best, urn]
        return longest[urn]

    path = max((chain(urn) for urn in sorted(graph)), key=len, default=[])
    return [_label(by_urn[u]) for u in path]


def prerequisites(rendered: RenderedStack, kind: str) -> list[str]:
    """What the objects of ``kind`` wait for, summarised by kind (e.g. ``KafkaTopic x6``)."""
    by_urn = {r.urn: r for r in rendered.resources}
    graph = wait_graph(rendered)
    lines = []
    of_kind = rendered.by_type(HELM_CHART_TYPE) if kind == "Chart" else rendered.kind(kind)
    for r in sorted(of_kind, key=lambda r: r.name):
        waited = Counter(_kind(by_urn[u]) for u in graph[r.urn])
        if not waited:
            continue
        listed = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(waited.items()))
        lines.append(f"{kind}/{r.name} waits for: {listed}")
    return lines


def _kind(r: Registered) -> str:
    return str(r.inputs.get("kind") or r.type.split(":")[-1])


def _label(r: Registered) -> str:
    kind = _kind(r)
    annotations = r.inputs.get("metadata", {}).get("annotations", {})
    wait = annotations.get("pulumi.com/waitFor")
    return f"{kind}/{r.name}" + (f" [{wait}]" if wait else "")


def summary(report: StackReport) -> str:
    rendered = report.rendered
    kinds = Counter(r.inputs["kind"] for r in rendered.resources if r.custom and "kind" in r.inputs)
    components = [r for r in rendered.resources if r.type.startswith("kafka-tasks:")]
    lines = [
        f"== {report.stack}: {len(rendered.resources)} resources "
        f"({len(components)} components, {sum(kinds.values())} Kubernetes objects, "
        f"{len(rendered.by_type(HELM_CHART_TYPE))} Helm charts)",
        "   " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())),
        "   first, before any object: a read of the stack's own outputs (the topic layout)",
        "   longest wait chain: " + " -> ".join(dependency_chain(rendered)),
        *(
            f"   {line}"
            for kind in ("Deployment", "ScaledObject", "Chart", "Gateway")
            for line in prerequisites(rendered, kind)
        ),
        f"   outputs: {rendered.outputs}",
        f"   manifests: {report.written} written, "
        + ("schema OK" if not report.errors else f"{len(report.errors)} SCHEMA ERRORS"),
    ]
    lines.extend(f"   ! {error}" for error in report.errors)
    return "\n".join(lines)


def engine_summary(report: EngineReport) -> str:
    """What the real engine did for one stack."""
    comparison = report.comparison
    kinds = report.kinds()
    lines = [
        f"   engine: preview {report.preview_steps}, up {report.up_steps}, "
        f"{report.state_resources} resources in the state, {len(report.rendered)} objects rendered",
        "   rendered: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())),
        f"   engine vs mocks: {comparison.same} objects identical, {comparison.chart_objects} "
        f"from Helm charts (engine only), {len(comparison.differences)} unexplained differences, "
        + ("schema OK" if not report.errors else f"{len(report.errors)} SCHEMA ERRORS"),
    ]
    lines.extend(f"   ! {difference}" for difference in comparison.differences)
    lines.extend(f"   ! {error}" for error in report.errors)
    return "\n".join(lines)


def run_engine(stack: str, overrides: dict[str, Any]) -> bool:
    """The engine check of one stack, printed; True when it passed."""
    from infra.engine.check import check_stack as engine_check
    from infra.engine.workspace import print_output

    with tempfile.TemporaryDirectory(prefix=f"kt-engine-{stack}-") as scratch:
        report, _ = engine_check(stack, Path(scratch), overrides, print_output(f"   [{stack}] "))
    print(engine_summary(report))
    return not report.errors and not report.comparison.differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    parser.add_argument("--out", type=Path, default=OUTPUT_ROOT)
    parser.add_argument("--engine", action="store_true", help="also run the real engine")
    parser.add_argument("--local-charts", type=Path, help="take every chart from this folder")
    args = parser.parse_args(argv)
    overrides = local_chart_overrides(args.local_charts) if args.local_charts else {}
    failed = False
    for stack in args.stacks:
        try:
            report = check_stack(stack, args.out / stack, overrides)
        except ConfigError as error:
            print(f"== {stack}: {error}")
            failed = True
            continue
        print(summary(report), flush=True)
        failed = failed or bool(report.errors)
        if args.engine:
            failed = not run_engine(stack, overrides) or failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
