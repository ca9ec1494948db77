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
from collections.abc import Callable
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

    for name in (None, "rt"):  # glibc 2.34+ has them in libc itself
        if name is not None:  # searched only if needed: find_library may run a program
            name = ctypes.util.find_library(name)
            if name is None:
                continue
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
        self.armed_at = math.inf  # -inf while the watchdog chooses a new time (see ``follow``)
        # Held while a time is chosen and set: the main thread (arming) and the watchdog (looking
        # ahead) both set it, and a look-ahead that predates a new deadline must not push it back.
        self.lock = threading.Lock()

    def by(self, when: float, now: float, wait: bool = True) -> None:
        """Make sure a signal comes no later than ``when``, unless one is due sooner. From the main
        thread; ``wait=False`` (a signal handler, which may have interrupted this very call): do
        nothing if the lock is held."""
        if now < self.armed_at <= when:  # the usual case: no system call, no lock
            return
        if not self.lock.acquire(wait):
            return
        try:
            if not now < self.armed_at <= when:
                self._set(when)
        finally:
            self.lock.release()

    def follow(self, soonest: Callable[[], float]) -> None:
        """From the watchdog: signal at ``soonest()`` (``inf``: never), which it reads with the lock
        held. Meanwhile ``armed_at`` is -inf, so an arm that read the old time takes the lock and
        looks again rather than trust a time this call may move past its deadline."""
        with self.lock:
            before, self.armed_at = self.armed_at, -math.inf
            try:
                when = soonest()
            finally:
                self.armed_at = before
            if when != before:
                self._set(when)

    def at_never(self) -> None:
        """No signal until set again (call with ``lock`` held)."""
        self._set(math.inf)

    def _set(self, when: float) -> None:
        spec = _ITimerSpec()
        if when < math.inf:
            fraction, seconds = math.modf(max(when, 1e-9))
            spec.value.sec, spec.value.nsec = int(seconds), int(fraction * 1e9) or 1
        self.armed_at = -math.inf  # until it is set: see ``follow``
        try:
            self._settime(self._id, TIMER_ABSTIME, ctypes.byref(spec), None)
        finally:
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
