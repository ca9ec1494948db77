"""Looking at processes from the tests: children, exits, and bounded polling (exits have no event)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def children(pid: int) -> set[int]:
    """Live or zombie children of ``pid``, from /proc."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def exited(pid: int, reaper: int | None = None) -> bool:
    """``pid`` has exited: it is gone, or a zombie (unless ``reaper`` is the parent still owing the reap)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] == "Z" and int(fields[1]) != reaper


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def left_on(pids) -> list:
    """Processes still running under any of ``pids`` (psutil copes with threads coming and going)."""
    import psutil

    return [c for pid in pids for c in psutil.Process(pid).children(recursive=True)]
