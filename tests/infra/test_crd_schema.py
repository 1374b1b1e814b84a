"""The CRD checker on small hand-made CRDs: each API-server behaviour it mimics, and that a
rule it cannot evaluate is reported rather than passed."""

from __future__ import annotations

from typing import Any

from infra.crd_schema import CrdSchemas


def crd(schema: dict[str, Any], served: bool = True) -> dict[str, Any]:
    return {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [{"name": "v1", "served": served, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def widget(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.size <= self.limit", "message": "size must not exceed limit"},
                {"rule": "self.size >= oldSelf.size", "message": "size may only grow"},
            ],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "default": 10},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
        }
    },
}
CHECKER = CrdSchemas([crd(SPEC_SCHEMA)], "test CRDs")


def test_a_valid_object_passes() -> None:
    spec = {"size": 3, "port": "http", "note": None, "extra": {"anything": 1}, "labels": {"a": "b"}}
    assert CHECKER.validate(widget(spec)) == []


def test_defaults_are_applied_before_the_rules() -> None:
    assert CHECKER.validate(widget({"size": 11})) == ["spec: size must not exceed limit"]
    assert CHECKER.validate(widget({"size": 11, "limit": 20})) == []


def test_unknown_fields_are_reported_unless_preserved() -> None:
    errors = CHECKER.validate(widget({"size": 1, "colour": "red", "extra": {"colour": "red"}}))
    assert errors == ["spec.colour: unknown field, the API server would prune it"]


def test_types_bounds_and_int_or_string() -> None:
    errors = CHECKER.validate(widget({"size": 0, "port": 1.5, "labels": {"a": 1}}))
    assert [e.split(":")[0] for e in errors] == ["spec.labels.a", "spec.port", "spec.size"]


def test_list_map_keys_must_be_unique() -> None:
    errors = CHECKER.validate(widget({"size": 1, "items": [{"name": "a"}, {"name": "a"}]}))
    assert errors == ["spec.items: duplicate entries for list-map keys ['name']"]


def test_a_rule_that_cannot_be_evaluated_is_reported() -> None:
    broken = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.missing > 1"}],
            }
        },
    }
    (error,) = CrdSchemas([crd(broken)], "test CRDs").validate(widget({}))
    assert error.startswith("spec: rule 'self.missing > 1' could not be evaluated")


def test_a_version_that_is_not_served_is_not_known() -> None:
    checker = CrdSchemas([crd(SPEC_SCHEMA, served=False)], "test CRDs")
    assert checker.validate(widget({"size": 1})) == [
        "no CRD in test CRDs serves example.com/v1 Widget"
    ]
