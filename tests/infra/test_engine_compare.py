"""Engine against mocks: explained differences are normalised away, any other is reported."""

from __future__ import annotations

import base64
import copy
from typing import Any

from infra.engine.compare import compare, key_of


def config_map(name: str, autonamed: bool = False, data: str = "1") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "app"}
    if autonamed:
        metadata["annotations"] = {"pulumi.com/autonamed": "true"}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"x": data}}


def deployment(config_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "app"},
        "spec": {"envFrom": [{"configMapRef": {"name": config_name}}]},
    }


def test_auto_names_and_references_to_them_compare_equal() -> None:
    engine = [config_map("settings-0a1b2c3d", autonamed=True), deployment("settings-0a1b2c3d")]
    mocks = [config_map("settings-ffffffff"), deployment("settings-ffffffff")]
    result = compare(engine, set(), mocks, {key_of(mocks[0])})
    assert (result.same, result.chart_objects, result.differences) == (2, 0, [])


def test_string_data_compares_with_the_providers_base64_data() -> None:
    mock_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "app"},
        "stringData": {"password": "pw"},
    }
    engine_secret = copy.deepcopy(mock_secret)
    engine_secret["data"] = {"password": base64.b64encode(b"pw").decode()}
    del engine_secret["stringData"]
    assert compare([engine_secret], set(), [mock_secret], set()).differences == []


def test_chart_objects_are_engine_only_and_anything_else_is_a_difference() -> None:
    chart_object = config_map("from-chart")
    stray = config_map("stray")
    changed_engine, changed_mock = config_map("c", data="1"), config_map("c", data="2")
    result = compare(
        [chart_object, stray, changed_engine], {key_of(chart_object)}, [changed_mock], set()
    )
    assert result.chart_objects == 1
    assert result.differences == [
        "ConfigMap app/c: data.x: engine '1' != mocks '2'",
        "ConfigMap app/stray: rendered by the engine only",
    ]


def test_an_object_the_engine_did_not_render_is_a_difference() -> None:
    result = compare([], set(), [config_map("lost")], set())
    assert result.differences == ["ConfigMap app/lost: declared in the mocks only"]
