"""The worker side of ``nbtimeout.map(executor=...)``: one task, in a fork child, on whatever worker runs it.

``run_task`` is what the executor runs. It forks a child of the worker under the fork engine, so the
task's limit is hard there too: a C loop is stopped at its deadline (SIGTERM, ``grace``, SIGKILL to
the child's group), a segfault kills only the child, and the worker process lives on. What the task
prints is collected and sent back with its result; ``cancel`` kills a map's children at once (the
caller's ``KeyboardInterrupt`` on Dask, through ``Client.run``).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

from .._errors import CellCrashedError, CellTimeoutError
from .._fork import engine
from .._fork.child import _unlimit_memory, outcome
from .._fork.protocol import Envelope
from .._process.forking import kill_group
from .carry import Parcel, error_parcel, pack
from .outcome import CRASHED, FAILED, STOPPED

# What a task may print before the rest is dropped: it travels in one message with the result.
MAX_OUTPUT = 1 << 20
Report = tuple[Parcel, float, list[tuple[str, str]]]  # the parcel, seconds it ran, (stream, text)...

_lock = threading.Lock()
_children: dict[str, set[int]] = {}  # map id -> pids of the fork children running its tasks here
_cancelled: set[str] = set()
_functions: dict[bytes, Callable[[Any], Any]] = {}  # digest of a pickled fn -> fn, unpickled once
_local = threading.local()  # .sink: the output list of the task this thread runs


def run_task(fn_blob: bytes, item_blob: bytes, limit: float, grace: float, memory: int | None,
             map_id: str) -> Report:
    """``fn(item)`` in a fork child of this worker; never raises for anything the task does."""
    _route_output()
    output: list[tuple[str, str]] = []
    started = time.monotonic()
    _local.sink = output
    try:
        return _run(fn_blob, item_blob, limit, grace, memory, map_id), time.monotonic() - started, output
    finally:
        _local.sink = None


def _run(fn_blob: bytes, item_blob: bytes, limit: float, grace: float, memory: int | None,
         map_id: str) -> Parcel:
    try:
        fn, item = _function(fn_blob), cloudpickle.loads(item_blob)
    except Exception as err:  # e.g. a module fn needs is not installed on this worker
        return error_parcel(err, FAILED)

    def work() -> Envelope:  # in the child
        envelope = outcome(lambda: fn(item))
        _unlimit_memory()  # the memory limit is the task's, not the pickling's
        return Envelope(value=pack(envelope))

    mine: list[int] = []

    def register(pid: int) -> None:
        mine.append(pid)
        with _lock:
            _children.setdefault(map_id, set()).add(pid)
            if map_id in _cancelled:  # cancelled while this one was being forked
                kill_group(pid)

    try:
        return engine.run(work, limit, grace=grace, memory=memory, started=register).value
    except (CellTimeoutError, CellCrashedError) as err:
        return error_parcel(err, STOPPED if isinstance(err, CellTimeoutError) else CRASHED)
    finally:
        with _lock:
            running = _children.get(map_id, set())
            running.difference_update(mine)
            if not running:
                _children.pop(map_id, None)


def cancel(map_id: str) -> int:
    """Kill the fork children of map ``map_id`` in this process, and any it forks later; how many."""
    with _lock:
        _cancelled.add(map_id)
        pids = _children.get(map_id, set())
        for pid in pids:
            kill_group(pid)  # each child leads its own group: what it started dies with it
        return len(pids)


def _function(blob: bytes) -> Callable[[Any], Any]:
    """``fn``, unpickled once per worker process rather than once per task."""
    digest = hashlib.blake2b(blob, digest_size=16).digest()
    fn = _functions.get(digest)
    if fn is None:
        fn = cloudpickle.loads(blob)
        with _lock:
            if len(_functions) >= 16:
                _functions.clear()
            _functions[digest] = fn
    return fn


class _Routed:
    """The worker's ``sys.stdout``/``sys.stderr``: a task's thread writes into its own list, every
    other thread to the stream it replaced (workers run tasks on several threads at once)."""

    def __init__(self, name: str, original: Any) -> None:
        self._name, self._original = name, original

    def write(self, text: str) -> int:
        sink = getattr(_local, "sink", None)
        if sink is None:
            return self._original.write(text)
        written, size = len(text), sum(len(t) for _, t in sink)
        if size < MAX_OUTPUT:
            if size + len(text) >= MAX_OUTPUT:
                text = text[:MAX_OUTPUT - size] + f"\n[nbtimeout: output past {MAX_OUTPUT >> 20} MB dropped]\n"
            if sink and sink[-1][0] == self._name:
                sink[-1] = (self._name, sink[-1][1] + text)
            else:
                sink.append((self._name, text))
        return written

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def _route_output() -> None:
    if isinstance(sys.stdout, _Routed) and isinstance(sys.stderr, _Routed):
        return
    with _lock:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _Routed):
                setattr(sys, name, _Routed(name, getattr(sys, name)))
