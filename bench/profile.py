"""Summaries of py-spy's collapsed stacks (``py-spy record --format raw``).

A flame graph is the better picture, but a report needs numbers: the share of samples spent
*in* a function (self) and *under* it (total), and the same grouped by package, which answers
"is the time in our code, in aiokafka, in redis-py or in the event loop?".
"""

from __future__ import annotations

import re
from collections import Counter

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def _parse(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.py:func`` (line numbers vary per sample)."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['file'].rsplit('/', 1)[-1]}:{match['func']}"


def package(frame: str) -> str:
    """The top-level package or module a frame belongs to.

    py-spy shortens paths relative to ``sys.path`` (``anyio/_backends/_asyncio.py``,
    ``threading.py``); full paths are cut after ``site-packages/`` or ``lib/python3.x/``.
    """
    match = _FRAME.match(frame.strip())
    path = match["file"] if match else frame.strip()
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = path.split("/", 1)[-1]
    head = path.lstrip("/").split("/", 1)[0]
    return head.removesuffix(".py")


def summarize_collapsed(text: str, *, top: int = 20) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    packages_total: Counter[str] = Counter()
    ours_total: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        # py-spy puts the thread/process as the first pseudo-frame; real frames follow.
        frames = [f for f in frames if "(" in f]
        if not frames or "Thread._bootstrap" in frames[0]:
            # Thread-pool threads: py-spy counts a thread parked in Condition.wait as active,
            # which would bury the event loop's real work under idle waiting.
            continue
        samples += count
        own[frame_name(frames[-1])] += count
        packages[package(frames[-1])] += count
        for name in {frame_name(f) for f in frames}:
            total[name] += count
        for name in {package(f) for f in frames}:
            packages_total[name] += count
        for name in {frame_name(f) for f in frames if package(f) == "services"}:
            ours_total[name] += count
    if not samples:
        return "no samples\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        lines = [title]
        for name, count in counter.most_common(top):
            lines.append(f"  {100 * count / samples:5.1f}%  {name}")
        return lines

    lines = [f"{samples} samples of the main thread (the event loop), busy only"]
    lines += block("by package (own time):", packages)
    lines += block("by package (total time, incl. callees):", packages_total)
    lines += block("our functions (services/, total time):", ours_total)
    lines += block("by function (own time):", own)
    lines += block("by function (total time, incl. callees):", total)
    return "\n".join(lines) + "\n"
