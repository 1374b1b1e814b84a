"""Check (and, as root, install) the system tools the local stack needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from devstack.processes import DevstackError

# Debian package that provides each tool.
_PACKAGES = {
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",  # --cluster create / reshard (a dependency of redis-server)
    # The dashboard's browser test drives Debian's Chromium (Playwright cannot download its own).
    "chromium": "chromium",
}
MIN_JAVA = 17


def ensure(*tools: str) -> None:
    """Make sure each tool is on PATH, installing the missing ones with apt-get when root."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = [_PACKAGES[tool] for tool in missing]
        if os.geteuid() != 0:
            raise DevstackError(
                f"missing {', '.join(missing)}: install the Debian packages "
                f"{' '.join(packages)} (sudo apt-get install {' '.join(packages)})"
            )
        print(f"devstack: installing {' '.join(packages)} with apt-get", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if "java" in tools:
        _check_java()


def _check_java() -> None:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < MIN_JAVA:
        raise DevstackError(
            f"Kafka 4.x needs Java {MIN_JAVA} or newer; `java -version` says {out!r}"
        )
