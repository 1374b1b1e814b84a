"""The Helm charts a stack installs, the values the program gives them, and the hook check.

Every chart goes through ``kubernetes.helm.v4.Chart``, which renders the chart and registers
its objects as ordinary resources but never runs Helm hooks (pulumi/pulumi-kubernetes#3284):
a hook is silently dropped. So a chart may only carry hooks whose work the program does
itself (Envoy Gateway's certgen, see components/ingress.py). ``hook_problems`` renders each
chart with ``helm template`` (the Helm version the provider embeds, built by `make engine`)
and the exact values the program passes, and reports every other hook.

    uv run python -m infra.charts [stack ...] [--local-charts DIR]

exits 1 when a stack's charts contain a hook the program does not replace. The tests run it
on the stand-in charts; the end-to-end workflow runs it on the real, downloaded charts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.config import ChartSource, StackConfig
from infra.errors import ChartRenderError

HOOK_ANNOTATION = "helm.sh/hook"
CHART_DIRS = {
    "strimziChart": "strimzi-kafka-operator",
    "kedaChart": "keda",
    "envoyGatewayChart": "gateway-helm",
    "ingressNginxChart": "ingress-nginx",
    "accessOperatorChart": "strimzi-access-operator",
}
"""Chart directory names, for a folder of local charts (a mirror, or the tests' stand-ins)."""
REPLACED_HOOKS = {
    "envoyGatewayChart": {"ServiceAccount", "Role", "RoleBinding", "Job"},
}
"""Hooks the program performs itself, by chart and kind; their names end in ``-certgen``."""
REPLACED_SUFFIX = "-certgen"


def strimzi_values(config: StackConfig) -> dict[str, Any]:
    return {
        # Only the Kafka namespace: the operator needs no cluster-wide watch here.
        "watchNamespaces": [],
        "watchAnyNamespace": False,
        "resources": {
            "requests": {"cpu": "200m", "memory": "384Mi"},
            "limits": {"cpu": "1", "memory": "384Mi"},
        },
    }


def envoy_gateway_values(config: StackConfig) -> dict[str, Any]:
    return {
        "global": {"images": {"envoyGateway": {"image": config.envoy_gateway_image_ref}}},
        # Its webhook configuration is a hook too; the feature (zone labels on proxy pods) is
        # optional and its failurePolicy is Ignore anyway.
        "topologyInjector": {"enabled": False},
    }


def ingress_nginx_values(config: StackConfig, ingress_class: str) -> dict[str, Any]:
    return {
        "controller": {
            "ingressClassResource": {"name": ingress_class},
            # The webhook's certificate comes from hook Jobs, which Chart v4 never runs;
            # with failurePolicy Fail every Ingress would then be refused.
            "admissionWebhooks": {"enabled": False},
            "service": {"type": config.api_exposure},
        }
    }


NGINX_CLASS = "nginx"


def installed(config: StackConfig) -> dict[str, tuple[ChartSource, dict[str, Any], str]]:
    """Each chart the stack installs: its source, values and namespace, by config key."""
    sources = config.chart_sources()
    charts = {
        "strimziChart": (sources["strimziChart"], strimzi_values(config), config.kafka_namespace),
        "kedaChart": (sources["kedaChart"], {}, config.keda_namespace),
        "accessOperatorChart": (sources["accessOperatorChart"], {}, config.kafka_namespace),
    }
    if config.ingress_mode == "gateway":
        charts["envoyGatewayChart"] = (
            sources["envoyGatewayChart"],
            envoy_gateway_values(config),
            config.ingress_namespace,
        )
    else:
        charts["ingressNginxChart"] = (
            sources["ingressNginxChart"],
            ingress_nginx_values(config, NGINX_CLASS),
            config.ingress_namespace,
        )
    return charts


def local_chart_overrides(charts_dir: Path) -> dict[str, str]:
    """Config that points every chart source at ``charts_dir/<chart>`` (mirror or stand-ins)."""
    overrides = {}
    for key, directory in CHART_DIRS.items():
        overrides[key] = str((charts_dir / directory).resolve())
        overrides[f"{key}Repository"] = ""
    return overrides


@dataclass(frozen=True)
class Hook:
    chart: str
    kind: str
    name: str
    events: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} ({HOOK_ANNOTATION}: {self.events})"


def render_chart(
    helm: Path, source: ChartSource, values: Mapping[str, Any], namespace: str
) -> list[dict[str, Any]]:
    """``helm template`` of ``source`` with ``values``: every object, hooks included."""
    with tempfile.TemporaryDirectory(prefix="kt-helm-") as scratch:
        values_file = Path(scratch) / "values.json"
        values_file.write_text(json.dumps(values))
        command = [str(helm), "template", "release", source.chart, "--namespace", namespace]
        command += ["--values", str(values_file)]
        if not source.is_local:
            command += ["--version", source.version]
        if source.repository:
            command += ["--repo", source.repository]
        environment = {
            "HELM_CACHE_HOME": f"{scratch}/cache",
            "HELM_CONFIG_HOME": f"{scratch}/config",
            "HELM_DATA_HOME": f"{scratch}/data",
            "PATH": "/usr/bin:/bin",
        }
        result = subprocess.run(
            command, capture_output=True, text=True, env=environment, check=False
        )
    if result.returncode != 0:
        raise ChartRenderError(
            f"helm template {source.chart} {source.version}: {result.stderr.strip()}"
        )
    return [d for d in yaml.safe_load_all(result.stdout) if isinstance(d, dict)]


def hooks_of(chart_key: str, objects: list[dict[str, Any]]) -> list[Hook]:
    hooks = []
    for obj in objects:
        metadata = obj.get("metadata") or {}
        events = (metadata.get("annotations") or {}).get(HOOK_ANNOTATION)
        if events:
            hooks.append(Hook(chart_key, str(obj.get("kind")), str(metadata.get("name")), events))
    return hooks


def is_replaced(hook: Hook) -> bool:
    """True for a hook whose work the program declares itself."""
    return hook.kind in REPLACED_HOOKS.get(hook.chart, set()) and hook.name.endswith(
        REPLACED_SUFFIX
    )


def hook_problems(config: StackConfig, helm: Path) -> list[str]:
    """One message per hook that Chart v4 would drop and nothing replaces; [] when none."""
    problems = []
    for key, (source, values, namespace) in installed(config).items():
        for hook in hooks_of(key, render_chart(helm, source, values, namespace)):
            if not is_replaced(hook):
                problems.append(
                    f"{key}={source.chart} {source.version} renders the Helm hook {hook}: "
                    "kubernetes.helm.v4.Chart never runs hooks, so it would never exist. "
                    "Switch it off with the chart's values, declare what it does in the "
                    "program, or install that chart with kubernetes.helm.v3.Release."
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    from infra.config import parse_config
    from infra.engine.versions import paths
    from infra.render import STACKS, stack_config

    parser = argparse.ArgumentParser(description="Refuse charts whose hooks Chart v4 would drop.")
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    parser.add_argument("--local-charts", type=Path, help="a folder of charts (mirror, stand-ins)")
    parser.add_argument("--helm", type=Path, default=paths().helm)
    args = parser.parse_args(argv)
    failed = False
    for stack in args.stacks:
        values = stack_config(stack)
        if args.local_charts is not None:
            values.update(local_chart_overrides(args.local_charts))
        problems = hook_problems(parse_config(values), args.helm)
        print(f"== {stack}: " + ("no Helm hook is dropped" if not problems else "HOOKS DROPPED"))
        for problem in problems:
            print(f"   ! {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
