"""``nbtimeout.map`` without an executor: many tasks, each with its own time limit, on long-lived forked workers.

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
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from .._fork.capture import read_dry
from .._fork.comms import publish
from .._fork.protocol import CLEAR, DISPLAY, IOPUB, STREAM
from .._process.channels import Ends, fork_with_channels
from .._process.forking import kill_group
from .._process.forking import reap as reap_worker
from . import ended
from .carry import Parcel, unpack
from .outcome import CRASHED, STOPPED, Outcome, Results
from .view import open_view, shell
from .worker import RESULT, serve


@dataclass(eq=False)
class _Worker:
    pid: int
    conn: Connection
    fds: dict[int, str]  # read ends of the worker's fd 1/2 pipes, and the stream each one is
    pidfd: int
    stack: int  # read end of the pipe its stack dumps go to (on SIGTERM and fatal signals)
    task: int | None = None
    started: float = 0.0
    stopping: float | None = None  # when it was sent SIGTERM for running past its limit
    done: int = 0
    dead: bool = False
    keys: list[int] = field(default_factory=list)


def _kill(pid: int, reap: bool = True) -> None:
    """SIGKILL the worker's group (whatever the task started goes too), then reap the worker."""
    if reap:
        reap_worker(pid)  # SIGKILL to its group first: a zombie keeps its pid from reuse
    else:
        kill_group(pid)


def run_local(fn: Callable[[Any], Any], items: list[Any], limit: float, workers: int,
              max_tasks: int | None, grace: float, memory: int | None) -> Results:
    """Every task on ``workers`` processes forked from this one; one Outcome per item, in order."""
    pool = _Pool(fn, items, limit, min(workers, len(items)), max_tasks, grace, memory)
    with open_view(len(items), limit, workers) as view:
        pool.view = view
        return pool.run()


class _Pool:
    def __init__(self, fn: Callable[[Any], Any], items: list[Any], limit: float, size: int,
                 max_tasks: int | None, grace: float, memory: int | None) -> None:
        self.fn, self.items, self.limit, self.size, self.max_tasks = fn, items, limit, size, max_tasks
        self.grace, self.memory = grace, memory
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
        deadline = min((self._deadline(w) for w in running), default=None)
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
            if worker in self.workers and worker.task is not None and now >= self._deadline(worker):
                self._stop(worker)

    def _deadline(self, worker: _Worker) -> float:
        """When the worker's task runs past its limit, or, once told to stop, its grace is over."""
        return worker.started + self.limit if worker.stopping is None else worker.stopping + self.grace

    def _spawn(self) -> _Worker:
        parent = os.getpid()
        fn, items = self.fn, self.items

        def child(ends: Ends) -> NoReturn:  # pragma: no cover - the worker never returns
            serve(ends.conn, lambda index: lambda: fn(items[index]), parent, ends.out, ends.err, self.shell,
                  self.memory, ends.stack)

        pid, ends, exit_end = fork_with_channels(child)
        worker = _Worker(pid, ends.conn, {ends.out: "stdout", ends.err: "stderr"}, exit_end, ends.stack)
        for fd, what in ((ends.conn.fileno(), "conn"), (worker.pidfd, "pidfd"), (ends.out, "stdout"),
                         (ends.err, "stderr")):
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
            elif kind == IOPUB:  # a task's comm (tqdm.auto, a widget): the kernel sends it
                publish(self.shell, *fields)
            elif kind == RESULT:
                self._finished(worker, *fields)

    def _finished(self, worker: _Worker, parcel: Parcel) -> None:
        self._drain_fds(worker)  # what it wrote to fd 1/2 before answering belongs to this task
        status, value, error = unpack(parcel)
        self._end(worker, status, value, error)
        worker.done += 1
        if worker.dead:
            return  # the caller replaces it
        if worker.stopping is not None:  # it answered just as it was told to stop: it is dying
            self._replace(worker)
            return
        if self.max_tasks is not None and worker.done >= self.max_tasks:
            self._replace(worker)
        else:
            self._dispatch(worker)

    def _died(self, worker: _Worker) -> None:
        if worker.stopping is not None:  # it ended on our SIGTERM
            self._stop(worker)
            return
        worker.dead = True
        self._read_conn(worker)  # an answer sent just before dying still counts
        self._drain_fds(worker)
        if worker.task is not None:
            how = reap_worker(worker.pid)  # before reading its dump: it is complete once it is dead
            error = ended.crashed(how, time.monotonic() - worker.started, ended.read_dump(worker.stack))
            self._end(worker, CRASHED, error=error)
        self._replace(worker)

    def _stop(self, worker: _Worker) -> None:
        """Past its limit: SIGTERM the worker; once it is gone or its grace is over, SIGKILL its
        group. What it printed is kept; the worker is replaced."""
        index = worker.task
        self._read_conn(worker)  # it may have answered while we were busy elsewhere
        if worker.task != index:
            return
        if worker.stopping is None and self.grace > 0:
            worker.stopping = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)  # the worker alone, as the fork engine does
            return  # its pidfd, or the end of its grace, brings it back here
        _kill(worker.pid)
        worker.dead = True
        self._read_conn(worker)
        self._drain_fds(worker)
        if worker.task is not None:
            elapsed = time.monotonic() - worker.started
            self._end(worker, STOPPED, error=ended.stopped(self.limit, elapsed, ended.read_dump(worker.stack)))
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
        for fd in (*worker.fds, worker.pidfd, worker.stack):
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
