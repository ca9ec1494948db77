"""``nbtimeout.map(..., executor=...)``: the tasks go to a Dask ``Client`` or any executor.

``fn`` and each item are cloudpickled here (so ``fn`` may be defined in the notebook, whatever the
executor pickles with), and the executor runs ``task.run_task``, which runs each task on a process
forked from its worker (see task.py, server.py). Results come back as Parcels, so one that cannot be
carried loses only its task. The caller's ``KeyboardInterrupt`` cancels the pending futures and kills
the running tasks' processes: on Dask through ``Client.run``, on this machine through the map's
folder (task.py); elsewhere a running task ends at its limit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

from .. import _pickling as pickling
from .._errors import CellCrashedError, CellResultError
from .._units import format_duration
from .carry import unpack
from .outcome import FAILED, Outcome, Results
from .task import cancel, cancel_here, folder, forget_cancelled, run_task
from .view import View, open_view

CRASHED_ON_WORKER = "the task's process on the worker {how} after {elapsed}; the worker is unharmed"
SCATTER = 1 << 16  # bytes of pickled fn from which Dask gets it once, as data, rather than in every task
POLL = 0.25  # seconds between looks at which tasks run (for the grid); results need no polling


class _Futures:
    """A ``concurrent.futures.Executor``, or anything whose ``submit`` returns such futures."""

    batch = 0.0  # seconds to wait for more results to fetch together: a result here is local already

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        count = getattr(executor, "_max_workers", None)  # ProcessPoolExecutor, ThreadPoolExecutor, loky
        self.workers: int | str = count if isinstance(count, int) else f"a {type(executor).__name__}"

    def submit(self, blobs: list[tuple[int, bytes]], fn_blob: bytes, limit: float, grace: float,
               memory: int | None, map_id: str) -> dict[int, Any]:
        return {index: self.executor.submit(run_task, fn_blob, blob, limit, grace, memory, map_id)
                for index, blob in blobs}

    def running(self, futures: dict[int, Any]) -> set[int]:
        return {i for i, f in futures.items() if getattr(f, "running", lambda: False)()}

    def results(self, futures: list[Any]) -> list[Any]:
        """Each future's result, or the exception it holds."""
        found = []
        for future in futures:
            try:
                found.append(future.result())
            except Exception as err:  # the executor's own failure: a broken pool, a cancelled future
                found.append(err)
        return found

    def cancel(self, futures: list[Any], map_id: str) -> None:
        for future in futures:
            future.cancel()


class _Dask(_Futures):
    """A ``distributed.Client``: one ``client.map``, batched gathers, and ``Client.run`` to cancel."""

    batch = 0.05  # each gather is a round trip to the workers: fetch what finished meanwhile with it

    def __init__(self, client: Any) -> None:
        self.executor = client
        self.workers = f"{sum(client.nthreads().values())} Dask worker threads"
        self.keys: dict[str, int] = {}

    def submit(self, blobs: list[tuple[int, bytes]], fn_blob: bytes, limit: float, grace: float,
               memory: int | None, map_id: str) -> dict[int, Any]:
        keys = [f"nbtimeout-map-{map_id}-{index}" for index, _ in blobs]
        self.keys = {key: index for key, (index, _) in zip(keys, blobs, strict=True)}
        fn: Any = fn_blob
        if len(fn_blob) > SCATTER:  # fn holds data (a closure over a DataFrame): send it once, not per task
            [fn] = self.executor.scatter([fn_blob], hash=False)
        futures = self.executor.map(run_task, [fn] * len(blobs), [b for _, b in blobs],
                                    limit=limit, grace=grace, memory=memory, map_id=map_id,
                                    key=keys, pure=False)
        return {index: future for (index, _), future in zip(blobs, futures, strict=True)}

    def running(self, futures: dict[int, Any]) -> set[int]:
        processing = self.executor.processing()
        return {self.keys[k] for keys in processing.values() for k in keys if k in self.keys}

    def results(self, futures: list[Any]) -> list[Any]:
        if all(f.status == "finished" for f in futures):
            return self.executor.gather(futures)  # one round trip for the batch
        return super().results(futures)

    def cancel(self, futures: list[Any], map_id: str) -> None:
        with contextlib.suppress(Exception):  # a worker gone meanwhile: its children died with it
            self.executor.cancel(futures)
            self.executor.run(cancel, map_id)  # on each worker's event loop: free even when its threads are busy


def backend_for(executor: Any) -> _Futures:
    """The adapter for ``executor``; TypeError naming what it got if it cannot run tasks."""
    if all(hasattr(executor, name) for name in ("nthreads", "processing", "gather", "run", "map")):
        return _Dask(executor)
    if callable(getattr(executor, "submit", None)):
        return _Futures(executor)
    raise TypeError(f"executor must be a distributed.Client or a concurrent.futures.Executor (anything whose "
                    f"submit() returns futures), not {type(executor).__name__}")


def run_on(backend: _Futures, fn: Callable[[Any], Any], items: list[Any], limit: float, grace: float,
           memory: int | None) -> Results:
    """Every task on ``backend``'s executor; one Outcome per item, in order."""
    try:
        fn_blob = pickling.dumps(fn, protocol=5)
    except Exception as err:
        raise CellResultError(f"fn could not be pickled to send it to the executor: {err}") from err
    results: list[Outcome | None] = [None] * len(items)
    blobs = []
    for index, item in enumerate(items):
        try:
            blobs.append((index, pickling.dumps(item, protocol=5)))
        except Exception as err:  # this task alone cannot be sent
            error = CellResultError(f"item {index} could not be pickled to send it to the executor: {err}")
            results[index] = Outcome(index, item, FAILED, error=error)
    map_id = uuid.uuid4().hex
    with contextlib.ExitStack() as cleanup:
        forget_cancelled()
        os.mkdir(folder(map_id))
        cancelled: list[bool] = []  # then the folder stays: a task the executor had queued still sees it
        cleanup.callback(lambda: cancelled or shutil.rmtree(folder(map_id), ignore_errors=True))
        view = cleanup.enter_context(open_view(len(items), limit, backend.workers))
        for outcome in results:
            if outcome is not None:
                view.ended(outcome.index, FAILED)
        futures: dict[int, Any] = {}
        try:
            futures = backend.submit(blobs, fn_blob, limit, grace, memory, map_id)
            _collect(backend, futures, items, results, view)
        except BaseException:  # KeyboardInterrupt, or a bug: nothing of this map goes on running
            backend.cancel(list(futures.values()), map_id)
            cancel_here(map_id)
            cancelled.append(True)
            raise
    return Results(results)


def _collect(backend: _Futures, futures: dict[int, Any], items: list[Any], results: list[Outcome | None],
             view: View) -> None:
    done: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index, future in futures.items():
        future.add_done_callback(lambda _, index=index: done.put(index))
    shown: set[int] = set()
    poll = 0.0
    while futures:
        if time.monotonic() >= poll:
            for index in backend.running(futures) - shown:
                view.running(index)
                shown.add(index)
            poll = time.monotonic() + POLL
        try:
            batch = [done.get(timeout=max(0.0, poll - time.monotonic()))]
        except queue.Empty:
            continue
        # More results within BATCH come in the same round trip; the last one waits no longer.
        window = time.monotonic() + backend.batch
        while len(batch) < len(futures):
            try:
                batch.append(done.get(timeout=max(0.0, window - time.monotonic())))
            except queue.Empty:
                break
        for index, report in zip(batch, backend.results([futures.pop(i) for i in batch]), strict=True):
            results[index] = _outcome(index, items[index], report, view)


def _outcome(index: int, item: Any, report: Any, view: View) -> Outcome:
    if isinstance(report, BaseException):
        view.ended(index, FAILED)
        return Outcome(index, item, FAILED, error=report)
    parcel, elapsed, output = report
    for name, text in output:
        view.write(index, name, text)
    status, value, error = unpack(parcel)
    if isinstance(error, CellCrashedError):  # the message names what it is about
        error.args = (CRASHED_ON_WORKER.format(how=error.how, elapsed=format_duration(error.elapsed)),)
    view.ended(index, status)
    return Outcome(index, item, status, value, error, elapsed)
