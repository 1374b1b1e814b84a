"""Check a custom resource as the API server would, against its CRD's structural schema.

For the CRD version that serves the object's ``apiVersion`` and ``kind``, in the server's
order: defaults from ``openAPIV3Schema`` are applied; fields the server would prune (not in
the schema and not under ``x-kubernetes-preserve-unknown-fields``) are reported, because a
silently dropped key is a bug in the program; the defaulted object is validated against the
schema (types, enums, patterns, bounds, required, list-map keys); and every CEL rule in
``x-kubernetes-validations`` is evaluated with cel-python. Transition rules (``oldSelf``)
only apply to updates and are skipped, as on create. A rule that cannot be evaluated is
reported, never passed.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import celpy
import jsonschema
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]


def _is_url(value: celtypes.StringType) -> celtypes.BoolType:
    parsed = urlparse(str(value))
    return celtypes.BoolType(bool(parsed.scheme) and bool(parsed.netloc or parsed.path))


def _is_ip(value: celtypes.StringType) -> celtypes.BoolType:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _is_cidr(value: celtypes.StringType) -> celtypes.BoolType:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


KUBERNETES_CEL_FUNCTIONS: dict[str, Any] = {"isURL": _is_url, "isIP": _is_ip, "isCIDR": _is_cidr}
"""The Kubernetes CEL library functions the checked CRDs use that cel-python lacks."""


class CrdSchemas:
    """The served versions of a set of CRDs, by ``(apiVersion, kind)``."""

    def __init__(self, crds: Iterable[dict[str, Any]], origin: str) -> None:
        self.origin = origin
        self.schemas: dict[tuple[str, str], Schema] = {}
        self.groups: set[str] = set()
        for crd in crds:
            spec = crd["spec"]
            self.groups.add(spec["group"])
            for version in spec["versions"]:
                if version.get("served", True):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    self.schemas[key] = version["schema"]["openAPIV3Schema"]
        self._programs: dict[str, celpy.Runner] = {}
        self._environment = celpy.Environment()

    def covers(self, api_version: str) -> bool:
        return api_version.rpartition("/")[0] in self.groups

    def validate(self, manifest: dict[str, Any]) -> list[str]:
        """Problems of ``manifest``; [] when the API server would accept it unchanged."""
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        schema = self.schemas.get(key)
        if schema is None:
            return [f"no CRD in {self.origin} serves {key[0]} {key[1]}"]
        obj = copy.deepcopy(manifest)
        apply_defaults(obj, schema)
        errors = [f"{p}: unknown field, the API server would prune it" for p in pruned(obj, schema)]
        validator = jsonschema.Draft4Validator(json_schema(schema, root=True))
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            errors.append(f"{_path(error.absolute_path)}: {error.message}")
        errors.extend(_list_key_errors(obj, schema, ""))
        errors.extend(self._cel_errors(obj, schema, ""))
        return errors

    def _program(self, rule: str) -> celpy.Runner:
        if rule not in self._programs:
            ast = self._environment.compile(rule)
            self._programs[rule] = self._environment.program(
                ast, functions=KUBERNETES_CEL_FUNCTIONS
            )
        return self._programs[rule]

    def _cel_errors(self, value: Any, schema: Schema, path: str) -> list[str]:
        if value is None:
            return []
        errors = []
        for validation in schema.get("x-kubernetes-validations", []):
            rule = validation["rule"]
            if "oldSelf" in rule:
                continue  # a transition rule: evaluated on updates only
            try:
                result = self._program(rule).evaluate({"self": json_to_cel(value)})
            except Exception as error:  # cel-python raises several types; all are failures
                errors.append(f"{path or '.'}: rule {rule!r} could not be evaluated: {error}")
                continue
            if isinstance(result, CELEvalError):
                errors.append(f"{path or '.'}: rule {rule!r} could not be evaluated: {result}")
            elif not (isinstance(result, celtypes.BoolType) and bool(result)):
                message = validation.get("message") or f"failed rule: {rule}"
                errors.append(f"{path or '.'}: {message}")
        for key, sub, child in _children(value, schema):
            errors.extend(self._cel_errors(child, sub, _join(path, key)))
        return errors


def _children(value: Any, schema: Schema) -> Iterable[tuple[str, Schema, Any]]:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                yield key, properties[key], child
            elif isinstance(extra, dict):
                yield key, extra, child
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield f"[{index}]", schema["items"], child


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill in ``default``s of absent properties, recursively, as the API server does."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
    for _, sub, child in _children(value, schema):
        apply_defaults(child, sub)


def pruned(value: Any, schema: Schema, path: str = "", root: bool = True) -> list[str]:
    """Paths the API server would drop: object keys the schema does not know."""
    found: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        known = set(schema.get("properties", {}))
        if root or schema.get("x-kubernetes-embedded-resource"):
            known |= {"apiVersion", "kind", "metadata"}
        if not isinstance(schema.get("additionalProperties"), dict):
            found.extend(f"{path}.{k}" if path else k for k in value if k not in known)
    for key, sub, child in _children(value, schema):
        if root and key == "metadata":
            continue  # ObjectMeta is the API server's own, not the CRD's
        found.extend(pruned(child, sub, _join(path, key), root=False))
    return found


def json_schema(schema: Schema, root: bool = False) -> Schema:
    """The OpenAPI v3 schema as JSON Schema draft 4: nullable and int-or-string spelled out."""
    converted: Schema = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            converted[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            converted[key] = json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            converted[key] = [json_schema(v) for v in value]
        elif not key.startswith("x-kubernetes-") and key not in ("nullable", "default"):
            converted[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in converted:
        converted = {"anyOf": [converted, {"type": "null"}]}
    if root:
        converted.setdefault("properties", {})["metadata"] = {"type": "object"}
    return converted


def _list_key_errors(value: Any, schema: Schema, path: str) -> list[str]:
    errors = []
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        if list_type == "map" and keys:
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            if len(seen) != len(set(seen)):
                errors.append(f"{path}: duplicate entries for list-map keys {keys}")
        elif list_type == "set":
            items = [repr(item) for item in value]
            if len(items) != len(set(items)):
                errors.append(f"{path}: duplicate entries in a list-type set")
    for key, sub, child in _children(value, schema):
        errors.extend(_list_key_errors(child, sub, _join(path, key)))
    return errors


def _join(path: str, key: str) -> str:
    if key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}" if path else key


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "."
