"""Fork engine: run work in a forked child, replay its output live, and kill it at the deadline.

The kernel waits on the Pipe, the child's fd 1/2 pipes and a pidfd of the child together, against
one monotonic deadline. Past it: the child's stack is dumped (faulthandler, so C code is no
obstacle), then one kill ladder, SIGTERM to the child's process group, ``grace`` seconds, SIGKILL.
A child that finished is reaped by a background thread, off the cell's critical path.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from .._errors import CellCrashedError, CellTimeoutError
from .._process.channels import Ends, fork_with_channels
from .._process.exits import signal_in_dump
from .._process.forking import exited, kill_group, reap
from .._process.memory import prepare as prepare_memory
from .._traceback import IN_OURS, NO_STACK, attach, format_frames, parse_dump
from .._where import describe_where
from .capture import Replay, read_dry
from .child import child_main, outcome, user_frames
from .errors import CarriedError, rebuild
from .protocol import BODY, DONE, OWN, PHASE, SYNC, Envelope, recv_done
from .stackdump import fallback_frames
from .stdin import PromptExpiredError
from .threads import waiting_hint


@dataclass
class Child:
    pid: int
    conn: Connection
    out: int
    err: int
    stack: int
    pidfd: int
    started: float
    stack_text: str = ""
    deadline: float = 0.0
    body: float | None = None  # when the user's code started (the child announces it)

    def phase(self, phase: str, at: float, limit: float) -> None:
        """Only the user's code counts against ``limit``; nbtimeout's own work is bounded apart."""
        if phase == BODY:
            self.body, self.deadline = at, at + limit
        elif phase in (OWN, SYNC):
            self.deadline = at + limit + SETUP_WORK if phase == OWN else at + OWN_WORK

    def close(self) -> None:
        self.conn.close()
        for fd in (self.out, self.err, self.stack):
            os.close(fd)


def start(work: Callable[[], Envelope], shell: Any, memory: int | None) -> Child:
    """Fork a child that runs ``work`` and sends back its envelope."""
    parent = os.getpid()
    if memory is not None:
        prepare_memory(memory)

    def child(ends: Ends) -> NoReturn:  # pragma: no cover - runs in the child
        # The Pipe is duplex: the kernel acknowledges each display (see _capture).
        child_main(work, shell, ends.conn, ends.out, ends.err, ends.stack, parent, memory)

    started = time.monotonic()
    pid, ends, exit_end = fork_with_channels(child)
    return Child(pid, ends.conn, ends.out, ends.err, ends.stack, exit_end, started)


def wait(child: Child, limit: float, replay: Replay, announces: bool = False) -> Envelope | None:
    """The child's envelope, or None once ``limit`` has passed; CellCrashedError if it died."""
    __tracebackhide__ = True
    # A child that announces its phases starts counting at BODY: forking and setting up are ours.
    child.deadline = child.started + limit + (SETUP_WORK if announces else 0.0)
    with selectors.DefaultSelector() as selector:
        for fd in (child.out, child.err, child.conn.fileno(), child.pidfd):
            selector.register(fd, selectors.EVENT_READ)
        while True:
            left = child.deadline - time.monotonic()
            if left <= 0:
                return None
            ready = {key.fd for key, _ in selector.select(left)}
            for fd, name in ((child.out, "stdout"), (child.err, "stderr")):
                if fd in ready and _read_dry(fd, name, replay):
                    selector.unregister(fd)
            if child.conn.fileno() in ready or child.pidfd in ready:
                try:
                    envelope = _drain(child, replay, limit)
                except PromptExpiredError:  # the limit passed while the kernel asked for input
                    return None
                if envelope is not None:
                    return envelope
            replay.flush()
            if child.pidfd in ready:
                _drain_fds(child, replay)
                raise _crashed(child)


def _acknowledge(child: Child) -> None:
    """Tell the child its display was shown (it waits for this; see _capture)."""
    with contextlib.suppress(OSError):  # a child that died has nothing left to wait for
        child.conn.send_bytes(b"shown")


def _crashed(child: Child) -> CellCrashedError:
    """Reap a child that died; the error names its signal or exit code, and where it was if it said."""
    signum, code = reap(child.pid) or (None, None)
    stack = _read_stack(child)
    if signum is None and code is None:  # its status was lost (the program ignores or reaps SIGCHLD)
        signum = signal_in_dump(stack)
    error = CellCrashedError(signum, code, time.monotonic() - child.started)
    frames = user_frames(parse_dump(stack))
    error.where = describe_where(frames)  # type: ignore[attr-defined]
    return attach(error, frames or fallback_frames())  # type: ignore[return-value]


def _read_stack(child: Child) -> str:
    os.set_blocking(child.stack, False)
    try:
        return os.read(child.stack, 1 << 20).decode(errors="replace")
    except BlockingIOError:
        return ""


def _drain(child: Child, replay: Replay, limit: float) -> Envelope | None:
    while child.conn.poll():
        try:
            kind, *fields = child.conn.recv()
        except EOFError:
            return None
        if kind == DONE:
            return recv_done(child.conn, *fields)
        if kind == PHASE:
            child.phase(*fields, limit)
            replay.deadline = child.deadline
            _acknowledge(child)  # the child sends it as any message, and waits for this
            continue
        replay.message(kind, *fields)
    return None


def _read_dry(fd: int, name: str, replay: Replay) -> bool:
    """Replay what ``fd`` holds now; True at end of file."""
    return read_dry(fd, lambda data: replay.raw(name, data))


def _drain_fds(child: Child, replay: Replay) -> None:
    for fd, name in ((child.out, "stdout"), (child.err, "stderr")):
        _read_dry(fd, name, replay)


def stop(child: Child, grace: float) -> None:
    """The kill ladder: SIGTERM (the child dumps its stack), ``grace``, SIGKILL to the group; reap."""
    if grace > 0:
        # The child alone first, and once: faulthandler's chained handler is SA_NODEFER, so a
        # second SIGTERM (from killpg) would cut its stack dump short. What it started gets
        # SIGTERM once the child is gone (or the grace is over), then SIGKILL with the group.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        exited(child.pidfd, grace)
        kill_group(child.pid, signal.SIGTERM)
    reap(child.pid)  # SIGKILL to the group, then reap
    child.stack_text = _read_stack(child)


class _Reaper:
    """One daemon thread that waits for finished children, kills their stragglers and reaps."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Child] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, child: Child) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="nbtimeout-reaper", daemon=True)
            self._thread.start()
        self._queue.put(child)

    def _run(self) -> None:
        while True:
            child = self._queue.get()
            finish(child)


def finish(child: Child) -> None:
    """Wait for a child that is done, kill what it left in its group, reap it, close its fds."""
    try:
        exited(child.pidfd, None)
        reap(child.pid)
    finally:
        os.close(child.pidfd)


reaper = _Reaper()
# nbtimeout's own work in the child (forking and a cell's snapshot before the body, pickling after it)
# does not count against the limit, but it is bounded: a child stuck before its body (a lock another
# kernel thread held at the fork) is stopped SETUP_WORK seconds past the limit; pickling gets OWN_WORK.
SETUP_WORK = 30.0
OWN_WORK = 120.0


def run(work: Callable[[], Envelope], limit: float, *, grace: float, memory: int | None,
        shell: Any = None, announces: bool = False) -> Envelope:
    """Run ``work`` in a child; its envelope, or CellTimeoutError/CellCrashedError.

    ``announces``: ``work`` runs the user's code through ``outcome``, which tells when it starts and
    ends, so only that counts against ``limit``.
    """
    __tracebackhide__ = True
    child = start(work, shell, memory)
    replay = Replay(shell, drain=lambda: _drain_fds(child, replay),
                    shown=lambda: _acknowledge(child), reply=child.conn.send,
                    deadline=child.started + limit)
    try:
        envelope = wait(child, limit, replay, announces)
    except BaseException as err:  # KeyboardInterrupt (the ■ button), a crash, anything: no child survives
        interrupted = isinstance(err, KeyboardInterrupt)
        if not exited(child.pidfd, 0):
            stop(child, grace=grace if interrupted else 0)  # SIGTERM first: the child dumps its stack
        _close_all(child)
        frames = user_frames(parse_dump(child.stack_text)) if interrupted else []
        if frames:  # ■ ends at the user's line in the child, not in the kernel's wait
            raise attach(err, frames) from None
        raise
    if envelope is not None:
        _drain_fds(child, replay)
        child.close()
        reaper.submit(child)
        return envelope
    elapsed = time.monotonic() - (child.body or child.started)
    stop(child, grace)
    _drain_fds(child, replay)
    _close_all(child)
    dumped = parse_dump(child.stack_text)
    frames = user_frames(dumped)
    unknown = None if frames else IN_OURS if dumped else NO_STACK
    error = CellTimeoutError(limit, elapsed, "fork", where=unknown or waiting_hint(describe_where(frames), frames),
                             stack=format_frames(frames) or None)
    if unknown:  # say so, and end the traceback at the user's line that started it, not in ours
        error.__notes__ = [unknown]
    raise attach(error, frames or fallback_frames())


def _close_all(child: Child) -> None:
    child.close()
    reap(child.pid)  # if it had exited on its own: nothing of its group survives either
    os.close(child.pidfd)


def raise_error(envelope: Envelope) -> NoReturn:
    """Re-raise the child's error with its chain, and the child's stack as its traceback."""
    __tracebackhide__ = True
    assert envelope.error is not None
    raise rebuild(envelope.error) if isinstance(envelope.error, CarriedError) else envelope.error


def run_call(func: Callable[[], Any], limit: float, *, grace: float = 1.0, memory: int | None = None) -> Any:
    """``func()`` run in a forked child: its value, or its exception with the child's traceback."""
    __tracebackhide__ = True
    envelope = run(lambda: outcome(func), limit, grace=grace, memory=memory, shell=_shell(), announces=True)
    if envelope.error is not None:
        raise_error(envelope)
    return envelope.value


def _shell() -> Any:
    """The running IPython shell, if any: its display plumbing must be replaced in the child too."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None
