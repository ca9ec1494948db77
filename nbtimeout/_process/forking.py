"""Forking from a kernel and killing what was forked: the pieces fork mode and ``map`` share."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import NoReturn

from .._errors import NO_FORK, EngineUnavailableError
from . import exits, guard, openfiles
from .exits import exit_fd, exited
from .facilities import LIBC, PR_SET_PDEATHSIG, PRCTL

__all__ = ["LIBC", "detach", "exit_fd", "exited", "fork", "kill_group", "reap"]


def fork(child: Callable[[], NoReturn]) -> int:
    """Fork; the child runs ``child`` (which must end in ``os._exit``), the parent gets its pid.

    The child leads its own process group, so the kernel's interrupt (``killpg(SIGINT)``) is the
    parent's to relay and one ``killpg`` reaches everything the child starts. The guard kills that
    group if this process dies first, and the group of every child the child forks in turn if the
    child dies first: stopping one level stops all below it. ``exit_fd(pid)`` tells when it ends;
    ``reap(pid)`` kills what is left of its group, reaps it and says how it ended.
    """
    if not hasattr(os, "fork"):
        raise EngineUnavailableError(NO_FORK)
    guard.ensure()
    # Flush first, or the child inherits unsent output and both of them send it.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    LIBC.fflush(None)
    openfiles.before_fork()  # file buffers too (before gc.freeze: it scans the kernel's objects)
    status, watch = exits.before_fork(), guard.before_fork()
    from_main = threading.current_thread() is threading.main_thread()
    gc.freeze()  # the child's collector then leaves the kernel's objects (and their pages) alone
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns that fork() in a threaded process may deadlock. The child uses no
            # lock another kernel thread could hold: it replaces the kernel's streams, publisher
            # and sockets before any user code, talks only through its own pipes and leaves with
            # os._exit, never running the kernel's atexit hooks or finalizers.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            global _parent_thread_lasts
            _parent_thread_lasts = from_main
            os.setpgid(0, 0)  # before the guard hears of the group
            exits.in_child(status)
            guard.in_child(watch)
            child()
        exits.in_parent(pid, status)
        guard.in_parent(pid, watch)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # the child does it too: whichever runs first wins the race
        return pid
    finally:
        gc.unfreeze()


# PR_SET_PDEATHSIG fires when the parent *thread* ends: only a child forked on the main thread may
# use it (map's executor forks long-lived servers from worker threads that come and go).
_parent_thread_lasts = False


def detach(parent: int) -> None:  # pragma: no cover - runs in the child
    """In the child: lead a process group, die with the kernel, and let SIGTERM kill."""
    os.setpgid(0, 0)
    if PRCTL is not None and _parent_thread_lasts:  # the guard does it everywhere; this is quicker
        PRCTL(PR_SET_PDEATHSIG, SIGKILL)
    if os.getppid() != parent:  # the kernel died before we were watched
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


SIGKILL = getattr(signal, "SIGKILL", 9)  # so that this module imports where there is no fork (Windows)


def kill_group(pgid: int, sig: int = SIGKILL) -> None:
    """Signal a process group that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap(pid: int) -> tuple[int | None, int | None] | None:
    """SIGKILL what is left of ``pid``'s group, reap ``pid``: (signal, exit code), see ``exits.collect``.

    None if ``pid`` was reaped already (so callers may reap twice, and never kill a reused pid).
    """
    if not exits.known(pid):
        return None
    exits.settle(pid)
    kill_group(pid)  # before reaping: a zombie keeps its pid, so its group id, from being reused
    try:
        return exits.collect(pid)
    finally:
        guard.release(pid)
