"""Forking from a kernel and killing what was forked: the pieces fork mode and ``map`` share."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import selectors
import signal
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

from .._errors import NO_FORK, EngineUnavailableError

LIBC = ctypes.CDLL(None)
PR_SET_PDEATHSIG = 1


def fork(child: Callable[[], NoReturn]) -> int:
    """Fork; the child runs ``child`` (which must end in ``os._exit``), the parent gets its pid.

    The child leads its own process group, so the kernel's interrupt (``killpg(SIGINT)``) is the
    parent's to relay and one ``killpg`` reaches everything the child starts.
    """
    if not hasattr(os, "fork"):
        raise EngineUnavailableError(NO_FORK)
    # Flush first, or the child inherits unsent output and both of them send it.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    LIBC.fflush(None)
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
            child()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # the child does it too: whichever runs first wins the race
        return pid
    finally:
        gc.unfreeze()


def detach(parent: int) -> None:  # pragma: no cover - runs in the child
    """In the child: lead a process group, die with the kernel, and let SIGTERM kill."""
    os.setpgid(0, 0)
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the kernel died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def exited(pidfd: int, timeout: float) -> bool:
    """Whether the process behind ``pidfd`` exits within ``timeout`` seconds (not reaped)."""
    with selectors.DefaultSelector() as selector:
        selector.register(pidfd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def exit_reason(pid: int) -> tuple[int | None, int]:
    """How an exited child ended, without reaping it: (signal number or None, exit code).

    The exit code is ``os.waitstatus_to_exitcode``'s: minus the signal for a killed child.
    Not reaping lets the caller kill the child's group first, while the zombie holds the pid.
    """
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return info.si_status, -info.si_status
    return None, info.si_status
