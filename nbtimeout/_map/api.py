"""``nbtimeout.map``: check the arguments, then run the tasks on forked workers or on an executor."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import NO_FORK, EngineUnavailableError
from .._units import parse_duration, parse_size
from .executor import backend_for, run_on
from .outcome import Results
from .pool import run_local


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map(fn: Callable[[Any], Any], items: Iterable[Any], timeout: float | str = 5.01,
        workers: int | None = None, max_tasks_per_worker: int | None = None, *, executor: Any = None,
        grace: float | str = 1.0, memory: int | str | None = None) -> Results:
    """``fn(item)`` for every item, each call stopped after ``timeout``.

    ``timeout`` is seconds or a duration (``"500ms"``) and counts from each task's own start; past
    it a task gets SIGTERM, then SIGKILL ``grace`` seconds later; ``memory`` ("1GB") caps what each
    task may allocate. Without ``executor`` the tasks run on ``workers`` processes forked from this
    one (default: the usable CPUs), each replaced after ``max_tasks_per_worker`` tasks and whenever
    it was stopped or crashed. With ``executor`` (a ``distributed.Client`` or any
    ``concurrent.futures.Executor``) each task runs on a process forked from the worker that picks
    it up. Output printed by a task comes out prefixed ``[index]``. Returns ``Results``: one
    ``Outcome`` per item, in order. ``KeyboardInterrupt`` stops every task and propagates.
    """
    if not hasattr(os, "fork"):
        raise EngineUnavailableError(NO_FORK)
    limit = parse_duration(timeout, "timeout")
    grace = 0.0 if grace == 0 else parse_duration(grace, "grace")
    memory = None if memory is None else parse_size(memory, "memory")
    for name, value in (("workers", workers), ("max_tasks_per_worker", max_tasks_per_worker)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if value is not None and executor is not None:
            raise ValueError(f"{name} applies to nbtimeout's own workers; with executor= the executor has its own")
    backend = None if executor is None else backend_for(executor)
    items = list(items)
    if not items:
        return Results()
    if backend is not None:
        return run_on(backend, fn, items, limit, grace, memory)
    workers = _default_workers() if workers is None else workers
    return run_local(fn, items, limit, workers, max_tasks_per_worker, grace, memory)
