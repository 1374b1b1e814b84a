"""The hook check: no chart installed through Chart v4 may carry a Helm hook the program does
not perform itself. Run with the Helm the provider embeds (built by `make engine`) on the
stand-in charts, which carry the real charts' hooks behind the same switches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra import charts
from infra.config import parse_config
from infra.engine.versions import paths
from infra.errors import ChartRenderError, ConfigError
from infra.render import STACKS, stack_config

STAND_INS = Path(__file__).parent / "charts"
HELM = paths().helm


def config_for(stack: str, **overrides: Any) -> Any:
    values = {**stack_config(stack), **charts.local_chart_overrides(STAND_INS), **overrides}
    return parse_config(values)


@pytest.mark.parametrize("stack", STACKS)
def test_no_stack_installs_a_hook_it_does_not_perform(stack: str) -> None:
    config = config_for(stack)
    assert charts.hook_problems(config, HELM) == []
    # The Envoy Gateway chart does carry certgen hooks: the check sees them, and lets them
    # pass only because the program declares that Job itself.
    source, values, namespace = charts.installed(config)["envoyGatewayChart"]
    hooks = charts.hooks_of(
        "envoyGatewayChart", charts.render_chart(HELM, source, values, namespace)
    )
    assert {hook.kind for hook in hooks} == {"ServiceAccount", "Job"}
    assert all(charts.is_replaced(hook) for hook in hooks)


def test_ingress_nginx_mode_installs_no_hook() -> None:
    assert charts.hook_problems(config_for("dev", ingressMode="ingress-nginx"), HELM) == []


def test_a_hook_switched_back_on_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    original = charts.envoy_gateway_values

    def with_topology_injector(config: Any) -> dict[str, Any]:
        return {**original(config), "topologyInjector": {"enabled": True}}

    monkeypatch.setattr(charts, "envoy_gateway_values", with_topology_injector)
    (problem,) = charts.hook_problems(config_for("dev"), HELM)
    assert "renders the Helm hook MutatingWebhookConfiguration/" in problem
    assert "kubernetes.helm.v4.Chart never runs hooks" in problem


def test_ingress_nginx_admission_webhook_hooks_are_reported_when_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = charts.ingress_nginx_values

    def with_webhook(config: Any, ingress_class: str) -> dict[str, Any]:
        values = original(config, ingress_class)
        values["controller"]["admissionWebhooks"] = {"enabled": True}
        return values

    monkeypatch.setattr(charts, "ingress_nginx_values", with_webhook)
    problems = charts.hook_problems(config_for("dev", ingressMode="ingress-nginx"), HELM)
    assert [p.split("renders the Helm hook ")[1].split(":")[0] for p in problems] == [
        "Job/release-admission-create (helm.sh/hook",
        "Job/release-admission-patch (helm.sh/hook",
    ]


def test_the_command_exits_non_zero_on_a_dropped_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert charts.main(["dev", "--local-charts", str(STAND_INS)]) == 0
    monkeypatch.setattr(charts, "REPLACED_HOOKS", {})
    assert charts.main(["dev", "--local-charts", str(STAND_INS)]) == 1
    assert "HOOKS DROPPED" in capsys.readouterr().out


def test_a_missing_local_chart_is_refused_by_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"strimziChart=.*no chart directory or archive"):
        config_for("dev", strimziChart=str(STAND_INS / "missing-chart"))


def test_a_chart_helm_cannot_render_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("not: a chart\n")
    config = config_for("dev", kedaChart=str(tmp_path))
    with pytest.raises(ChartRenderError, match="helm template"):
        charts.hook_problems(config, HELM)
