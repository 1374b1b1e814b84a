"""The engine's rendered objects against the ones the mocks render (infra.render).

They must agree. The differences that are explained, and therefore normalised away:

* auto-names: both give an object without ``metadata.name`` the name ``<resource>-<8 hex>``,
  random in the engine, derived from the name in the mocks; each such name, and every
  reference to it (envFrom, volumes), becomes ``<auto:resource>`` on both sides;
* the provider marks such objects with the annotation ``pulumi.com/autonamed: "true"``;
* the provider sends a Secret's ``stringData`` as base64 ``data`` (what the API server
  stores too), so the mocks' ``stringData`` is encoded the same way before comparing;
* objects of Helm charts exist only in the engine (the mocks do not run charts; the
  provider renders them, here from the stand-in or mirrored charts).

Anything else is reported as a difference, with its path.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass, field
from typing import Any

AUTONAMED_ANNOTATION = "pulumi.com/autonamed"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
_AUTO_SUFFIX = re.compile(r"^(?P<base>.+)-[0-9a-f]{8}$")

Key = tuple[str, str, str, str]


def key_of(obj: dict[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion")),
        str(obj.get("kind")),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name")),
    )


def _string_data_encoded(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "stringData" in obj:
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return obj


def _replace_strings(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_strings(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def normalise(objects: list[dict[str, Any]], auto_named: set[Key]) -> dict[Key, dict[str, Any]]:
    """Objects by key, with auto-names (and references to them) made comparable."""
    names = {}
    for obj in objects:
        if key_of(obj) in auto_named:
            name = obj["metadata"]["name"]
            match = _AUTO_SUFFIX.match(name)
            names[name] = f"<auto:{match['base'] if match else name}>"
    result = {}
    for obj in objects:
        clean = _string_data_encoded(copy.deepcopy(obj))
        annotations = (clean.get("metadata") or {}).get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(AUTONAMED_ANNOTATION, None)
            if not annotations:
                del clean["metadata"]["annotations"]
        clean = _replace_strings(clean, names)
        result[key_of(clean)] = clean
    return result


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Paths where ``left`` (engine) and ``right`` (mocks) disagree."""
    if isinstance(left, dict) and isinstance(right, dict):
        found = []
        for key in sorted(set(left) | set(right)):
            where = f"{path}.{key}" if path else key
            if key not in right:
                found.append(f"{where}: only in the engine ({left[key]!r})")
            elif key not in left:
                found.append(f"{where}: only in the mocks ({right[key]!r})")
            else:
                found.extend(differences(left[key], right[key], where))
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for i, (a, b) in enumerate(zip(left, right, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if left != right:
        return [f"{path}: engine {left!r} != mocks {right!r}"]
    return []


@dataclass
class Comparison:
    same: int = 0
    chart_objects: int = 0
    differences: list[str] = field(default_factory=list)


def compare(
    engine_objects: list[dict[str, Any]],
    chart_keys: set[Key],
    mock_objects: list[dict[str, Any]],
    mock_auto_named: set[Key],
) -> Comparison:
    """Compare the provider's rendered objects with the mocks' (see the module docstring).
    ``chart_keys``: the engine objects that belong to a Helm chart (from the state)."""
    engine_auto = {
        key_of(o)
        for o in engine_objects
        if ((o.get("metadata") or {}).get("annotations") or {}).get(AUTONAMED_ANNOTATION) == "true"
    }
    engine = normalise(engine_objects, engine_auto)
    mocks = normalise(mock_objects, mock_auto_named)
    chart_normalised = {k for k in engine if k in {key_of(o) for o in engine_objects} & chart_keys}
    result = Comparison()
    for key in sorted(set(engine) | set(mocks)):
        label = f"{key[1]} {key[2]}/{key[3]}".replace(" /", " ")
        if key not in mocks:
            if key in chart_normalised:
                result.chart_objects += 1
            else:
                result.differences.append(f"{label}: rendered by the engine only")
        elif key not in engine:
            result.differences.append(f"{label}: declared in the mocks only")
        else:
            found = differences(engine[key], mocks[key])
            result.differences.extend(f"{label}: {d}" for d in found)
            result.same += not found
    return result
