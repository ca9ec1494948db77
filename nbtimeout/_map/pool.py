"""``nbtimeout.map``: many tasks, each with its own time limit, on long-lived forked workers.

Workers are forked from the calling process (the kernel), so ``fn`` and ``items`` are inherited,
never pickled. Each worker reads task indices from its socketpair and answers with the task's
output (routed as in fork mode) and a cloudpickled result. The parent waits on every worker's
socket, fd 1/2 pipes and pidfd with one selector, against the earliest running task's deadline. A
worker past its deadline or dead is killed (SIGKILL to its process group), reaped and replaced.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from .._errors import NO_FORK, CellCrashedError, CellTimeoutError, EngineUnavailableError
from .._fork.capture import read_dry
from .._fork.protocol import CLEAR, DISPLAY, STREAM
from .._process.forking import exit_reason, fork, kill_group
from .._traceback import RemoteTraceback, attach
from .._units import parse_duration
from .outcome import CRASHED, FAILED, FINISHED, STOPPED, Outcome, Results
from .view import open_view, shell
from .worker import RESULT, serve


@dataclass(eq=False)
class _Worker:
    pid: int
    conn: Connection
    fds: dict[int, str]  # read ends of the worker's fd 1/2 pipes, and the stream each one is
    pidfd: int
    task: int | None = None
    started: float = 0.0
    done: int = 0
    dead: bool = False
    keys: list[int] = field(default_factory=list)


def _kill(pid: int, reap: bool = True) -> None:
    """SIGKILL the worker's group (whatever the task started goes too), then reap the worker."""
    kill_group(pid)  # before reaping: a zombie keeps its pid from reuse
    with contextlib.suppress(ChildProcessError):
        if reap:
            os.waitpid(pid, 0)


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map(fn: Callable[[Any], Any], items: Iterable[Any], timeout: float | str = 5.01,
        workers: int | None = None, max_tasks_per_worker: int | None = None) -> Results:
    """``fn(item)`` for every item on forked workers, each call stopped after ``timeout``.

    ``timeout`` is seconds or a duration (``"500ms"``) and counts from each task's own start.
    ``workers`` defaults to the usable CPUs; a worker is replaced after ``max_tasks_per_worker``
    tasks, and whenever it was killed (a task ran past its limit) or crashed. Output printed by a
    task comes out prefixed ``[index]``. Returns ``Results``: one ``Outcome`` per item, in order;
    ``.values()`` for the finished values, ``.unwrap()`` to get all or raise the first error.
    ``KeyboardInterrupt`` kills every worker, reaps them and propagates.
    """
    if not hasattr(os, "fork"):
        raise EngineUnavailableError(NO_FORK)
    limit = parse_duration(timeout, "timeout")
    workers = _default_workers() if workers is None else workers
    for name, value in (("workers", workers), ("max_tasks_per_worker", max_tasks_per_worker)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    items = list(items)
    if not items:
        return Results()
    pool = _Pool(fn, items, limit, min(workers, len(items)), max_tasks_per_worker)
    with open_view(len(items), limit, workers) as view:
        pool.view = view
        return pool.run()


class _Pool:
    def __init__(self, fn: Callable[[Any], Any], items: list[Any], limit: float, size: int,
                 max_tasks: int | None) -> None:
        self.fn, self.items, self.limit, self.size, self.max_tasks = fn, items, limit, size, max_tasks
        self.results: list[Outcome | None] = [None] * len(items)
        self.next = 0  # the next task index to hand out
        self.left = len(items)
        self.workers: list[_Worker] = []
        self.view: Any = None
        self.shell = shell()

    def run(self) -> Results:
        with selectors.DefaultSelector() as self.selector:
            try:
                for _ in range(self.size):
                    self._dispatch(self._spawn())
                while self.left:
                    self._step()
            finally:  # finished, KeyboardInterrupt or a bug: no worker outlives the call
                for worker in self.workers:  # all killed first, then reaped: quick on interrupt
                    _kill(worker.pid, reap=False)
                for worker in list(self.workers):
                    self._retire(worker)
        return Results(self.results)

    def _step(self) -> None:
        running = [w for w in self.workers if w.task is not None]
        deadline = min((w.started + self.limit for w in running), default=None)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        for key, _ in self.selector.select(timeout):
            worker, what = key.data
            if worker not in self.workers:
                continue  # retired while handling an earlier event of this batch
            if what == "conn":
                self._read_conn(worker)
            elif what == "pidfd":
                self._died(worker)
            else:
                self._read_fd(worker, key.fd)
        now = time.monotonic()
        for worker in running:
            if worker in self.workers and worker.task is not None and now >= worker.started + self.limit:
                self._stop(worker)

    def _spawn(self) -> _Worker:
        parent_end, child_end = Pipe()
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        parent = os.getpid()

        def child() -> NoReturn:  # pragma: no cover - the worker never returns
            parent_end.close()
            os.close(out_r)
            os.close(err_r)
            serve(child_end, self.fn, self.items, parent, out_w, err_w, self.shell)

        pid = 0
        try:
            pid = fork(child)
            worker = _Worker(pid, parent_end, {out_r: "stdout", err_r: "stderr"}, os.pidfd_open(pid))
        except BaseException:  # an interrupt right after fork: no untracked worker may survive
            if pid:
                _kill(pid)
            for fd in (out_r, err_r):
                os.close(fd)
            parent_end.close()
            raise
        finally:
            child_end.close()
            os.close(out_w)
            os.close(err_w)
        for fd, what in ((parent_end.fileno(), "conn"), (worker.pidfd, "pidfd"), (out_r, "stdout"),
                         (err_r, "stderr")):
            self.selector.register(fd, selectors.EVENT_READ, (worker, what))
            worker.keys.append(fd)
        self.workers.append(worker)
        return worker

    def _dispatch(self, worker: _Worker) -> None:
        """Hand ``worker`` the next task, or retire it when there is none."""
        if self.next >= len(self.items):
            self._retire(worker)
            return
        worker.task, self.next = self.next, self.next + 1
        worker.started = time.monotonic()
        worker.conn.send(worker.task)
        self.view.running(worker.task)

    def _read_conn(self, worker: _Worker) -> None:
        while worker.task is not None and worker.conn.poll():
            try:
                kind, *fields = worker.conn.recv()
            except (EOFError, OSError):
                return  # it died: its pidfd says so, or the caller knows
            if kind == STREAM:
                self.view.write(worker.task, *fields)
            elif kind in (DISPLAY, CLEAR):
                self.view.message(kind, *fields)
            elif kind == RESULT:
                self._finished(worker, *fields)

    def _finished(self, worker: _Worker, envelope: Any) -> None:
        self._drain_fds(worker)  # what it wrote to fd 1/2 before answering belongs to this task
        if envelope.error is None:
            self._end(worker, FINISHED, value=envelope.value)
        else:
            error = attach(envelope.error, envelope.error_frames)
            error.__cause__ = RemoteTraceback(envelope.error_text)
            self._end(worker, FAILED, error=error)
        worker.done += 1
        if worker.dead:
            return  # the caller replaces it
        if self.max_tasks is not None and worker.done >= self.max_tasks:
            self._replace(worker)
        else:
            self._dispatch(worker)

    def _died(self, worker: _Worker) -> None:
        worker.dead = True
        self._read_conn(worker)  # an answer sent just before dying still counts
        self._drain_fds(worker)
        if worker.task is not None:
            error = CellCrashedError(*exit_reason(worker.pid), time.monotonic() - worker.started)
            self._end(worker, CRASHED, error=error)
        self._replace(worker)

    def _stop(self, worker: _Worker) -> None:
        """The task ran past its limit: kill the worker's group, keep what it printed, replace it."""
        index = worker.task
        self._read_conn(worker)  # it may have answered while we were busy elsewhere
        if worker.task != index:
            return
        _kill(worker.pid)
        worker.dead = True
        self._read_conn(worker)
        self._drain_fds(worker)
        if worker.task is not None:
            elapsed = time.monotonic() - worker.started
            self._end(worker, STOPPED, error=CellTimeoutError(self.limit, elapsed, "fork"))
        self._replace(worker)

    def _end(self, worker: _Worker, status: str, value: Any = None,
             error: BaseException | None = None) -> None:
        index, worker.task = worker.task, None
        assert index is not None
        elapsed = time.monotonic() - worker.started
        self.results[index] = Outcome(index, self.items[index], status, value, error, elapsed)
        self.left -= 1
        self.view.ended(index, status)

    def _replace(self, worker: _Worker) -> None:
        """Kill and reap ``worker``; fork another if tasks are waiting."""
        self._retire(worker)
        if self.next < len(self.items):
            self._dispatch(self._spawn())

    def _retire(self, worker: _Worker) -> None:
        _kill(worker.pid)
        if worker.task is not None:  # interrupted mid-task: flush what it printed
            self.view.flush(worker.task)
        for fd in worker.keys:
            self.selector.unregister(fd)
        worker.conn.close()
        for fd in (*worker.fds, worker.pidfd):
            os.close(fd)
        self.workers.remove(worker)

    def _read_fd(self, worker: _Worker, fd: int) -> None:
        data = os.read(fd, 1 << 16)
        if data:
            self.view.raw(worker.pid, worker.task, worker.fds[fd], data)
        else:
            self.selector.unregister(fd)
            worker.keys.remove(fd)

    def _drain_fds(self, worker: _Worker) -> None:
        for fd in worker.fds:
            if fd not in worker.keys:
                continue
            read_dry(fd, lambda data, fd=fd: self.view.raw(worker.pid, worker.task, worker.fds[fd], data))
            os.set_blocking(fd, True)
