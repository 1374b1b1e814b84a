#!/usr/bin/env bash
# Prints the path of a uv binary, installing the pinned version into .devstack/uv when the
# machine has none (PyPI ships uv as a wheel, so this needs only python3 and pip).
set -euo pipefail
UV_VERSION="${UV_VERSION:-0.13.8}"
if command -v uv >/dev/null 2>&1; then
  command -v uv
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.devstack/uv"
if [ ! -x "$venv/bin/uv" ]; then
  command -v python3 >/dev/null || { echo "ensure-uv: python3 is required" >&2; exit 1; }
  echo "ensure-uv: installing uv $UV_VERSION into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
echo "$venv/bin/uv"
