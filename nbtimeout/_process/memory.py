"""``--memory``: what a fork child may allocate beyond what it had at its start, where it can be held.

Enforced: ``RLIMIT_AS`` capped at the address space the child maps at its start (``VmSize``, read
from ``/proc``) plus the allowance, so going over is a ``MemoryError`` at the allocation itself.
Where the address space cannot be read (macOS, and ``NBTIMEOUT_PORTABLE=1``; macOS would not
enforce RLIMIT_AS anyway) it is a watch, not a limit: every 50 ms of the child's CPU time its peak
resident memory is compared with what it had at its start (psutil) plus the allowance, and past it
the work gets ``MemoryError`` as soon as the running C call returns (so the allocation is never
stored, as under a real limit, but it did happen); the peak is checked again when the work ends.
The kernel says so in one line.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

try:
    import resource
except ImportError:  # Windows: no fork either, so no child to limit
    resource = None  # type: ignore[assignment]

from .facilities import PROC_STATUS

PERIOD = 0.05
WATCHED = ("nbtimeout: --memory is watched here, not enforced (RLIMIT_AS needs /proc): resident memory "
           "is checked every {period:g} s of CPU time and a MemoryError raised past {limit} more than at the start")
UNENFORCED = "nbtimeout: --memory cannot be enforced here (no /proc for RLIMIT_AS, no psutil to watch with)"
EXCEEDED = "the work went past its --memory allowance of {limit} (resident memory, watched)"

_told = False  # this process said already that --memory is only watched (children inherit it)
_current: Limit | None = None


def enforced() -> bool:
    """Whether --memory is a hard limit here (RLIMIT_AS) rather than a watch."""
    return PROC_STATUS is not None and resource is not None and hasattr(resource, "RLIMIT_AS")


def prepare(extra: int) -> None:
    """In the parent, before forking children with --memory: say, once per call, what --memory
    does here when it is not a hard limit, and import what the children's watch needs."""
    global _told
    if not enforced():
        print(_notice(extra), file=sys.stderr)
        _told = True


def _notice(extra: int) -> str:
    from .._units import format_size

    try:
        import psutil  # noqa: F401 - imported once in the kernel, not in every child
    except ImportError:
        return UNENFORCED
    return WATCHED.format(period=PERIOD, limit=format_size(extra))


def apply(extra: int) -> None:
    """In the child, before the work: allow ``extra`` bytes beyond what it has now."""
    global _current
    _current = Limit(extra)


def settle(raising: bool = True) -> None:
    """Right after the work (still inside its error handling): stop watching; MemoryError if it went over."""
    if _current is not None:
        _current.settle(raising)


def release() -> None:
    """After the work: lift the allowance (room to send the result back)."""
    global _current
    if _current is not None:
        _current.settle(raising=False)
        _current.release()
        _current = None


class Limit:
    def __init__(self, extra: int) -> None:
        self.extra = extra
        self._cap: int | None = None  # resident bytes allowed, where --memory is watched
        self._fired = False
        self._ticking = False
        if enforced():
            self._cap_address_space()
        else:
            self._watch()

    def _cap_address_space(self) -> None:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _address_space() + self.extra
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))

    def _watch(self) -> None:
        if not _told:
            print(_notice(self.extra), file=sys.stderr)
        psutil: Any = sys.modules.get("psutil")
        if psutil is None or resource is None:
            return
        rss = psutil.Process().memory_info().rss
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in kilobytes on Linux, bytes on macOS: the peak is never below the present.
        self._scale = 1 if peak >= rss else 1024
        self._peak_before = peak * self._scale
        self._cap = rss + self.extra
        # The check runs as a SIGPROF handler every 50 ms of the child's CPU time, not in a thread:
        # a handler runs as soon as a C call returns, before its value is stored (so `big = ...`
        # never binds `big`), while a thread would wait for the GIL that the C call holds.
        if (hasattr(signal, "setitimer") and signal.getsignal(signal.SIGPROF) == signal.SIG_DFL
                and threading.current_thread() is threading.main_thread()):
            signal.signal(signal.SIGPROF, self._tick)
            signal.setitimer(signal.ITIMER_PROF, PERIOD, PERIOD)
            self._ticking = True
        # else (a profiler owns SIGPROF): only the peak, checked when the work ends

    def _over(self) -> bool:
        if self._cap is None:
            return False
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * self._scale
        return peak > self._cap and peak > self._peak_before

    def _tick(self, signum: int, frame: Any) -> None:
        if not self._fired and self._over():
            self._fired = True
            self._stop_ticking()
            raise MemoryError(self._message())

    def _stop_ticking(self) -> None:
        if self._ticking:
            self._ticking = False
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, signal.SIG_DFL)  # a tick still pending is then dropped

    def _message(self) -> str:
        from .._units import format_size

        return EXCEEDED.format(limit=format_size(self.extra))

    def settle(self, raising: bool) -> None:
        self._stop_ticking()
        over = self._fired or self._over()
        self._fired = False
        if raising and over:
            raise MemoryError(self._message())

    def release(self) -> None:
        self._stop_ticking()
        if enforced():
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def _address_space() -> int:
    assert PROC_STATUS is not None
    with open(PROC_STATUS) as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
