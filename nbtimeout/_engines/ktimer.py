"""A kernel timer that sends the private signal straight to the main thread at a deadline.

``timer_create`` with ``SIGEV_THREAD_ID`` (Linux, FreeBSD): the kernel delivers the signal at the
due time itself, as it delivers SIGALRM for ``setitimer``, so a stop does not wait for the watchdog
thread to be scheduled first. Only the watchdog arms it. Where it cannot be made (macOS, Windows,
``NBTIMEOUT_PORTABLE=1``) the watchdog sends the signal itself (``pthread_kill``), a little later.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from typing import Any

SIGEV_THREAD_ID = 4
TIMER_ABSTIME = 1
CLOCK_MONOTONIC = 1  # the clock of time.monotonic() on Linux and FreeBSD


class _SigEvent(ctypes.Structure):
    # struct sigevent is 64 bytes: sigev_value, sigev_signo, sigev_notify, then a union whose
    # first int is the thread id (sigev_notify_thread_id).
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int),
                ("tid", ctypes.c_int * ((64 - ctypes.sizeof(ctypes.c_void_p)) // ctypes.sizeof(ctypes.c_int) - 2))]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def _functions() -> tuple[Any, Any] | None:
    import ctypes.util  # on first use: it imports subprocess, which `import nbtimeout` need not

    for name in (None, ctypes.util.find_library("rt")):  # glibc 2.34+ has them in libc itself
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        if hasattr(lib, "timer_create") and hasattr(lib, "timer_settime"):
            return lib.timer_create, lib.timer_settime
    return None


class KernelTimer:
    """One POSIX timer that signals ``signum`` to the main thread at absolute monotonic times."""

    def __init__(self, create: Any, settime: Any, signum: int, tid: int) -> None:
        self._settime = settime
        event = _SigEvent(None, signum, SIGEV_THREAD_ID)
        event.tid[0] = tid
        self._id = ctypes.c_void_p()
        if create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(self._id)) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.armed_at = math.inf

    def at(self, when: float) -> None:
        """Signal at monotonic time ``when`` (replacing any earlier request); ``inf``: never."""
        if when == self.armed_at:
            return
        spec = _ITimerSpec()
        if when < math.inf:
            fraction, seconds = math.modf(max(when, 1e-9))
            spec.value.sec, spec.value.nsec = int(seconds), int(fraction * 1e9) or 1
        self._settime(self._id, TIMER_ABSTIME, ctypes.byref(spec), None)
        self.armed_at = when


def make(signum: int) -> KernelTimer | None:
    """A timer for the main thread, or None where this platform (or NBTIMEOUT_PORTABLE) has none."""
    from .._process.facilities import PORTABLE

    functions = None if PORTABLE else _functions()
    tid = getattr(threading.main_thread(), "native_id", None)
    if functions is None or tid is None:
        return None
    try:
        return KernelTimer(*functions, signum, tid)
    except OSError:  # no SIGEV_THREAD_ID here
        return None
