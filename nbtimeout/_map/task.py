"""The worker side of ``nbtimeout.map(executor=...)``: what the executor runs for each task.

``run_task`` runs the task on a task server, a process forked from the worker (see server.py), so the
task's limit is hard there too: a C loop is stopped at its deadline (SIGTERM, ``grace``, SIGKILL to
the server's group), a segfault kills only the server, and the worker process lives on. What the
task prints is sent back with its result. On the caller's ``KeyboardInterrupt`` a map's running
servers are killed at once: by ``cancel`` on each Dask worker (through ``Client.run``), and for any
executor whose workers share the caller's machine through a folder where they note their servers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading

from .._process.forking import kill_group
from . import server
from .carry import Parcel

Report = tuple[Parcel, float, list[tuple[str, str]]]  # the parcel, seconds it ran, (stream, text)...

_lock = threading.Lock()
_children: dict[str, set[int]] = {}  # map id -> pids of the servers running its tasks here
_cancelled: set[str] = set()
CANCELLED = "cancelled"  # in a map's folder: the caller was interrupted


def run_task(fn_blob: bytes, item_blob: bytes, limit: float, grace: float, memory: int | None,
             map_id: str) -> Report:
    """``fn(item)`` on a task server of this worker; never raises for anything the task does."""
    output: list[tuple[str, str]] = []
    mine: list[int] = []

    def register(pid: int) -> None:
        mine.append(pid)
        with _lock:
            _children.setdefault(map_id, set()).add(pid)
            if map_id in _cancelled or _noted(map_id, pid):  # cancelled while this task was on its way
                kill_group(pid)

    try:
        parcel, elapsed = server.run(fn_blob, item_blob, limit, grace, memory, output, register)
    finally:
        with _lock:
            running = _children.get(map_id, set())
            running.difference_update(mine)
            if not running:
                _children.pop(map_id, None)
        for pid in mine:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder(map_id), str(pid)))
    return parcel, elapsed, output


def folder(map_id: str) -> str:
    """Where the caller and the workers on its own machine note a map's running servers."""
    return os.path.join(tempfile.gettempdir(), f"nbtimeout-map-{map_id}")


def _noted(map_id: str, pid: int) -> bool:
    """Note ``pid`` in the map's folder if this is the caller's machine; whether it was cancelled."""
    try:
        open(os.path.join(folder(map_id), str(pid)), "w").close()
    except OSError:  # no such folder: another machine (the caller's Client.run reaches it), or the map is over
        return False
    return os.path.exists(os.path.join(folder(map_id), CANCELLED))  # noted first, then looked: no gap


def forget_cancelled(age: float = 86400.0) -> None:
    """Remove the folders of maps cancelled over ``age`` seconds ago (each holds a marker only)."""
    import glob
    import shutil
    import time

    for path in glob.glob(folder("*")):
        with contextlib.suppress(OSError):
            if time.time() - os.path.getmtime(os.path.join(path, CANCELLED)) > age:
                shutil.rmtree(path)


def cancel_here(map_id: str) -> None:
    """In the caller: kill the servers noted by workers on this machine (any executor), and mark the
    map cancelled so that a server noted from now on kills itself."""
    open(os.path.join(folder(map_id), CANCELLED), "w").close()
    for name in os.listdir(folder(map_id)):
        if name.isdigit():
            kill_group(int(name))


def cancel(map_id: str) -> int:
    """Kill the servers running tasks of map ``map_id`` here, and any it gets later; how many."""
    with _lock:
        _cancelled.add(map_id)
        pids = _children.get(map_id, set())
        for pid in pids:
            kill_group(pid)  # each server leads its own group: what its task started dies with it
        return len(pids)
