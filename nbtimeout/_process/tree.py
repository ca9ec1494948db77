"""Stop the processes a cell started: SIGTERM, a grace period, SIGKILL, then reap.

A cell run in the kernel (signal engine) starts processes as children of the kernel: ``!cmd``,
``%%bash``, ``subprocess``, ``os.system``. :class:`Started` notes when the cell started (and, on
Linux, the children its thread had then, in microseconds); when the cell is stopped, each child of
the kernel started since, with everything below it, is stopped. Children that existed before the
cell are left alone, and on Linux so are those that threads which ran before the cell (a background
job's, other than the cell's own thread) start during it; so are nbtimeout's own forks (fork mode,
``nbtimeout.map`` workers), which their engines stop and reap themselves.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import sys
import threading
import time

import psutil

from .facilities import PORTABLE

_POLL = 0.01  # seconds between looks at processes that were sent SIGTERM (exits have no event here)


# The children the calling thread forked (Linux): read in microseconds, where psutil scans every
# process. Start times alone (10 ms ticks on Linux) cannot tell a child forked just before the cell.
_THREAD_CHILDREN = "/proc/thread-self/children"
_FAST = not PORTABLE and os.path.exists(_THREAD_CHILDREN)


def _clock() -> float:
    """Now, on the clock of psutil's ``create_time`` (on Linux: boot time plus ticks since boot)."""
    if _BOOTTIME:
        return _BOOT + time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


# Where there is a boot-time clock (Linux), psutil counts start times from boot; elsewhere (macOS)
# it reads them as wall-clock times.
_BOOTTIME = hasattr(time, "CLOCK_BOOTTIME")
_BOOT = psutil.boot_time() if _BOOTTIME else 0.0
# How much earlier than its true start a start time may read: Linux counts in clock ticks (10 ms),
# rounded down; macOS keeps microseconds.
_TICK = (1 / os.sysconf("SC_CLK_TCK") if _BOOTTIME else 0.0) + 0.001


def forked_here() -> frozenset[int]:
    """Pids of children that existed before: those the calling thread forked (Linux, cheap); all
    of them where start times are too coarse to tell and /proc cannot say (psutil); else none."""
    if _FAST:
        with open(_THREAD_CHILDREN) as f:
            return frozenset(map(int, f.read().split()))
    if _BOOTTIME:
        return frozenset(p.pid for p in psutil.Process().children())
    return frozenset()  # start times to the microsecond (macOS) tell old children from new


def _threads() -> frozenset[str]:
    """The kernel's threads now, by native id (Linux); empty where /proc cannot tell."""
    return frozenset(os.listdir("/proc/self/task")) if _FAST else frozenset()


def _others_children(threads: frozenset[str], own: str) -> set[int]:
    """Children forked by ``threads`` (those that were there before the cell), the cell's ``own`` left out."""
    pids: set[int] = set()
    for tid in threads - {own}:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(map(int, f.read().split()))
        except OSError:  # the thread ended
            continue
    return pids


def _own_fork(proc: psutil.Process, me: psutil.Process) -> bool:
    """A child nbtimeout forked: it leads its own process group and runs the kernel's program."""
    try:
        return os.getpgid(proc.pid) == proc.pid and proc.cmdline() == me.cmdline()
    except (psutil.Error, OSError):
        return False


class Started:
    """The processes started since this object was made; ``stop`` ends them."""

    __slots__ = ("_before", "_lock", "_signalled", "_since", "_threads", "_tid", "overdue")

    def __init__(self) -> None:
        self._before = forked_here()
        # Threads that ran before the cell, other than its own, are not the cell's code: what they
        # start meanwhile (a background job) is theirs. Threads the cell starts count as the cell.
        self._tid, self._threads = str(threading.get_native_id()), _threads()
        self._since = _clock() - _TICK
        self._lock = threading.Lock()
        self._signalled: set[int] = set()  # direct children we stopped, still to be reaped
        self.overdue = False  # the watcher stopped them: the run was still going past its deadline

    def new(self) -> tuple[list[psutil.Process], set[int]]:
        """The new direct children (nbtimeout's forks left out) with all their descendants, and
        the pids of those direct children."""
        me = psutil.Process()
        procs, direct = [], set()
        theirs = _others_children(self._threads, self._tid) if self._threads else set()
        for child in me.children():
            try:
                if child.pid in self._before or child.pid in theirs or child.create_time() < self._since:
                    continue  # it was there before the cell
                if child.status() == psutil.STATUS_ZOMBIE or _own_fork(child, me):
                    continue
                # The whole tree first: a grandchild whose parent dies is re-parented out of reach.
                procs += [child, *child.children(recursive=True)]
                direct.add(child.pid)
            except psutil.Error:
                continue
        return procs + self._orphans(me, {p.pid for p in procs}), direct

    def _orphans(self, me: psutil.Process, seen: set[int]) -> list[psutil.Process]:
        """Processes of the kernel's group started since, whose parent died and left them to init.

        ``subprocess.run`` kills the shell it started when the stop unwinds it: what that shell
        started lives on, no longer below the kernel, but still in the kernel's process group.
        """
        group = os.getpgid(0)
        found = []
        for proc in psutil.process_iter(["create_time"]):
            try:
                if proc.pid in seen or proc.pid == me.pid or proc.info["create_time"] < self._since:
                    continue
                if os.getpgid(proc.pid) == group and me.pid not in {p.pid for p in proc.parents()}:
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        return found

    def signal(self, grace: float, overdue: bool = False) -> None:
        """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL; safe from any thread, idempotent.
        ``overdue``: the run is past its deadline (the watcher), noted if there was anything to stop."""
        with self._lock:
            procs, direct = self.new()
            if not procs:
                return
            self.overdue |= overdue
            self._signalled |= direct
            _send(procs, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            left = _wait_gone(procs, grace)
            if left:
                _send(left, signal.SIGKILL)
                _wait_gone(left, 1.0)

    def was_overdue(self) -> bool:
        """Whether the watcher stopped anything, once any stop it has under way is done."""
        with self._lock:
            return self.overdue

    def stop(self, grace: float) -> None:
        """``signal`` the new processes, then reap the kernel's children among them (main thread)."""
        self.signal(grace)
        with self._lock:
            signalled, self._signalled = self._signalled, set()
        if signalled:
            _reap(signalled)


def _send(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # checks the pid was not reused, then signals
            proc.send_signal(sig)


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still running after up to ``seconds`` (not reaped: their parents may be waiting)."""
    deadline = time.monotonic() + seconds
    left = [p for p in procs if not _gone(p)]
    while left and time.monotonic() < deadline:
        time.sleep(_POLL)
        left = [p for p in left if not _gone(p)]
    return left


def _reap(pids: set[int]) -> None:
    """Reap exited children: through their ``Popen`` when there is one, so its returncode is true."""
    import subprocess

    objects = gc.get_objects()
    # asyncio's children are its own to reap: its watcher (a thread blocked in waitpid() up to 3.11,
    # the loop reading a pidfd since 3.12) sets the returncode the cell's Process reports. Reaped
    # here first, the watcher finds the status gone and reports 255.
    base = sys.modules.get("asyncio.base_subprocess")
    asyncios = {id(getattr(obj, "_proc", None)) for obj in objects
                if base is not None and isinstance(obj, base.BaseSubprocessTransport)}
    for obj in objects:
        if isinstance(obj, subprocess.Popen) and obj.returncode is None and obj.pid in pids:
            if id(obj) not in asyncios:
                obj.poll()
            pids.discard(obj.pid)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):  # someone else (os.system, asyncio) reaped it
            os.waitpid(pid, os.WNOHANG)


class _Watcher:
    """One thread that stops a cell's processes at its deadline, for when the kernel cannot.

    A blocking ``os.system()`` waits in C: the alarm's handler runs only when it returns, so the
    process it waits for must end first. Cells register when they start and cancel when they end.
    """

    SLACK = 0.05  # after the deadline: the alarm has usually unwound the cell by then

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Started, float]] = {}
        self._thread: threading.Thread | None = None
        self._next = 0
        self._wakes_at = math.inf  # when the thread wakes next: a later deadline needs no wake-up


    def watch(self, started: Started, deadline: float, grace: float) -> int:
        """Stop ``started``'s processes at monotonic ``deadline`` unless cancelled first."""
        with self._cond:
            self._next += 1
            self._due[self._next] = (deadline + self.SLACK, started, grace)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nbtimeout-processes", daemon=True)
                self._thread.start()
            if deadline + self.SLACK < self._wakes_at:
                # Waking the thread costs the cell a GIL hand-over; most cells need none.
                self._wakes_at = deadline + self.SLACK
                self._cond.notify()
            return self._next

    def cancel(self, token: int) -> None:
        with self._cond:
            self._due.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [t for t, (when, _, _) in self._due.items() if when <= now]
                if not due:
                    self._wakes_at = min((when for when, _, _ in self._due.values()), default=math.inf)
                    self._cond.wait(None if self._wakes_at == math.inf else self._wakes_at - now)
                    continue
                work = [self._due.pop(t) for t in due]
            for _, started, grace in work:
                started.signal(grace, overdue=True)


watcher = _Watcher()


def _after_fork_in_child() -> None:
    # Only the forking thread exists in a child: a fresh watcher, and locks nobody holds.
    global watcher
    watcher = _Watcher()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
