"""The worker side of ``nbtimeout.map(executor=...)``: what the executor runs for each task.

``run_task`` runs the task on a task server, a process forked from the worker (see server.py), so the
task's limit is hard there too: a C loop is stopped at its deadline (SIGTERM, ``grace``, SIGKILL to
the server's group), a segfault kills only the server, and the worker process lives on. What the
task prints is sent back with its result; ``cancel`` kills a map's servers at once (the caller's
``KeyboardInterrupt`` on Dask, through ``Client.run``).
"""

from __future__ import annotations

import threading

from .._process.forking import kill_group
from . import server
from .carry import Parcel

Report = tuple[Parcel, float, list[tuple[str, str]]]  # the parcel, seconds it ran, (stream, text)...

_lock = threading.Lock()
_children: dict[str, set[int]] = {}  # map id -> pids of the servers running its tasks here
_cancelled: set[str] = set()


def run_task(fn_blob: bytes, item_blob: bytes, limit: float, grace: float, memory: int | None,
             map_id: str) -> Report:
    """``fn(item)`` on a task server of this worker; never raises for anything the task does."""
    output: list[tuple[str, str]] = []
    mine: list[int] = []

    def register(pid: int) -> None:
        mine.append(pid)
        with _lock:
            _children.setdefault(map_id, set()).add(pid)
            if map_id in _cancelled:  # cancelled while this task was on its way
                kill_group(pid)

    try:
        parcel, elapsed = server.run(fn_blob, item_blob, limit, grace, memory, output, register)
    finally:
        with _lock:
            running = _children.get(map_id, set())
            running.difference_update(mine)
            if not running:
                _children.pop(map_id, None)
    return parcel, elapsed, output


def cancel(map_id: str) -> int:
    """Kill the servers running tasks of map ``map_id`` here, and any it gets later; how many."""
    with _lock:
        _cancelled.add(map_id)
        pids = _children.get(map_id, set())
        for pid in pids:
            kill_group(pid)  # each server leads its own group: what its task started dies with it
        return len(pids)
