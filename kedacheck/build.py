"""Build the Go program in ``kedacheck/go/`` against KEDA's module, once per KEDA version.

The wrapper module is generated, not committed: it requires ``github.com/kedacore/keda/v2`` at
the version the stack's chart deploys and takes KEDA's own ``replace`` directives from the
go.mod that the Go module proxy serves for that version (``go mod download -json``, field
``GoMod``). Without them controller-runtime and the k8s.io modules resolve to versions that do
not build together; taking them from KEDA keeps them right for every version.

Everything lives outside the repository, so a fresh clone (CI) reuses it:
``${XDG_CACHE_HOME:-~/.cache}/kafka-tasks/keda-check/``: ``go/`` holds the Go module and build
caches, shared by every version; ``<version>/`` the generated module and the binary, named by
a digest of ``main.go``, the Go version and the KEDA version, so a changed program is rebuilt.
A lock file keeps two builds (say ``make keda-check`` and the test suite) from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kedacheck.errors import KedaCheckError

KEDA_MODULE = "github.com/kedacore/keda/v2"
WRAPPER_MODULE = "kafka-tasks/kedacheck"
SOURCE = Path(__file__).resolve().parent / "go" / "main.go"
BINARY_NAME = "kedacheck"
BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")
"""No paths of this machine and no symbol tables in the binary (127 MB -> about 90 MB)."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-tasks" / "keda-check"


def module_version(chart_version: str) -> str:
    """The Go module version of the KEDA a chart version deploys.

    KEDA releases the chart and the operator together under one number (chart 2.20.2 runs
    KEDA 2.20.2), so the module version is the chart version with a ``v``.
    """
    version = chart_version.strip()
    if not version or not version[0].isdigit():
        raise KedaCheckError(
            f"kedaChartVersion {chart_version!r} is not a release number like 2.20.2"
        )
    return f"v{version}"


@dataclass(frozen=True)
class BuiltScaler:
    version: str
    binary: Path
    seconds: float
    """How long this call took (near zero when the cached binary was reused)."""
    reused: bool


def go_environment(root: Path) -> dict[str, str]:
    """The Go settings of every build step: caches under ``root``, no cgo, no toolchain
    download (the machine's Go must be new enough; the error says so otherwise)."""
    return {
        **os.environ,
        "GOMODCACHE": str(root / "go" / "mod"),
        "GOCACHE": str(root / "go" / "build"),
        "GOFLAGS": "-mod=mod -modcacherw",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise KedaCheckError(
            "the KEDA check needs Go (https://go.dev/dl/, or Debian's golang-go) on PATH"
        )
    return go


def _go_version(env: dict[str, str]) -> str:
    return subprocess.run(
        [_go(), "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def binary_path(version: str, env: dict[str, str], root: Path) -> Path:
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update(_go_version(env).encode())
    digest.update(version.encode())
    digest.update(" ".join(BUILD_FLAGS).encode())
    return root / version / f"{BINARY_NAME}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_scaler(chart_version: str, console: Console | None = None) -> BuiltScaler:
    """The path of the program built against KEDA ``chart_version``; builds it when missing."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    version = module_version(chart_version)
    root = cache_root()
    env = go_environment(root)
    binary = binary_path(version, env, root)
    if binary.exists():
        return BuiltScaler(version, binary, time.monotonic() - started, reused=True)
    with _locked(root / version / ".lock"):
        if binary.exists():  # another process built it while we waited
            return BuiltScaler(version, binary, time.monotonic() - started, reused=True)
        console.print(
            f"[bold]keda-check[/]: building KEDA {version}'s kafka scaler into {binary.parent} "
            "(first build ~9 min on 2 cores, then cached)"
        )
        _build(version, binary, env, console)
    return BuiltScaler(version, binary, time.monotonic() - started, reused=False)


def _build(version: str, binary: Path, env: dict[str, str], console: Console) -> None:
    module = binary.parent / "module"
    shutil.rmtree(module, ignore_errors=True)
    module.mkdir(parents=True)
    keda_mod = keda_go_mod(version, env)
    _write_wrapper(module, version, keda_mod, env)
    _run_with_status(
        [_go(), "mod", "tidy"], module, env, console, f"resolving KEDA {version}'s modules"
    )
    total = _packages_to_build(module, env)
    partial = binary.with_name(binary.name + ".partial")
    # nice: other engineers' stacks and tests share the machine's two cores.
    command = ["nice", "-n", "10", _go(), "build", "-v", *BUILD_FLAGS, "-o", str(partial), "."]
    with Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[package]}", style="dim"),
        console=console,
    ) as progress:
        bar = progress.add_task("go build: packages", total=total, package="")
        done = [0]
        started = time.monotonic()

        def advance(line: str) -> None:
            progress.update(bar, advance=1, package=line.strip()[-60:])
            done[0] += 1
            # A log (CI) gets no live bar: a line every tenth of the way instead.
            if not console.is_terminal and done[0] % max(total // 10, 1) == 0:
                elapsed = time.monotonic() - started
                console.print(f"go build: {done[0]}/{total} packages, {elapsed:.0f} s")

        _stream(command, module, env, advance)
        progress.update(bar, completed=total, package="done")
    partial.replace(binary)
    for stale in binary.parent.glob(f"{BINARY_NAME}-*"):
        if stale != binary:
            stale.unlink(missing_ok=True)


def keda_go_mod(version: str, env: dict[str, str]) -> dict[str, Any]:
    """KEDA's own go.mod for ``version``, parsed by ``go mod edit -json``."""
    download = subprocess.run(
        [_go(), "mod", "download", "-json", f"{KEDA_MODULE}@{version}"],
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        info = json.loads(download.stdout)
    except json.JSONDecodeError:
        info = {}
    if download.returncode != 0 or "GoMod" not in info:
        raise KedaCheckError(
            f"the Go module proxy does not serve {KEDA_MODULE}@{version}: "
            f"{info.get('Error') or download.stderr.strip()}. Set kedaChartVersion to a "
            "released KEDA version."
        )
    parsed = subprocess.run(
        [_go(), "mod", "edit", "-json", info["GoMod"]],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(parsed.stdout)
    return result


def _write_wrapper(
    module: Path, version: str, keda_mod: dict[str, Any], env: dict[str, str]
) -> None:
    go_directive = str(keda_mod.get("Go") or "")
    shutil.copyfile(SOURCE, module / "main.go")
    (module / "go.mod").write_text(
        f"// Generated by kedacheck/build.py for KEDA {version}; not committed.\n"
        f"module {WRAPPER_MODULE}\n\ngo {go_directive}\n"
    )
    edits = [f"-require={KEDA_MODULE}@{version}"]
    for replace in keda_mod.get("Replace") or []:
        old, new = replace["Old"], replace["New"]
        source = old["Path"] + (f"@{old['Version']}" if old.get("Version") else "")
        if not new.get("Version"):
            # A local-path replace only makes sense inside KEDA's own tree.
            raise KedaCheckError(f"KEDA {version}'s go.mod replaces {source} with a local path")
        edits.append(f"-replace={source}={new['Path']}@{new['Version']}")
    for exclude in keda_mod.get("Exclude") or []:
        edits.append(f"-exclude={exclude['Path']}@{exclude['Version']}")
    result = subprocess.run(
        [_go(), "mod", "edit", *edits], cwd=module, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise KedaCheckError(f"cannot write the wrapper go.mod: {result.stderr.strip()}")


def _run_with_status(
    command: list[str], cwd: Path, env: dict[str, str], console: Console, label: str
) -> None:
    """Run ``command``, showing its latest output line under a spinner."""
    seen = [0]

    def show(line: str) -> None:
        seen[0] += 1
        status.update(f"{label}: {seen[0]} lines ({line.strip()[-70:]})")

    if not console.is_terminal:
        console.print(f"{label} (the first time this downloads about 2 GB of modules)")
    with console.status(label) as status:
        _stream(command, cwd, env, show)


def _stream(
    command: list[str], cwd: Path, env: dict[str, str], on_line: Callable[[str], object]
) -> None:
    """Run ``command``, handing each output line to ``on_line``; raise with the last lines
    when it fails."""
    output: list[str] = []
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            on_line(line)
    if process.returncode != 0:
        raise KedaCheckError(f"{' '.join(command)} failed in {cwd}:\n{''.join(output[-40:])}")


def _packages_to_build(module: Path, env: dict[str, str]) -> int:
    """Packages ``go build`` compiles on a cold cache (the progress bar's total)."""
    listed = subprocess.run(
        [_go(), "list", "-deps", "-f", "{{.ImportPath}}", "."],
        cwd=module,
        env=env,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        raise KedaCheckError(f"go list failed in {module}:\n{listed.stderr.strip()}")
    return len(listed.stdout.split())
