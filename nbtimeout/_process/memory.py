"""``--memory``: what a fork child may allocate beyond what it had at its start, where it can be held.

Enforced: ``RLIMIT_AS`` capped at the address space the child maps at its start (``VmSize``, read
from ``/proc``) plus the allowance, so going over is a ``MemoryError`` at the allocation itself.
Where the address space cannot be read (macOS, and ``NBTIMEOUT_PORTABLE=1``; macOS would not
enforce RLIMIT_AS anyway) it is a watch, not a limit: a thread in the child reads its resident
memory (psutil) every 50 ms and raises ``MemoryError`` in the work past the allowance, and when the
work ends its peak resident memory is checked too, so a spike the thread could not see (a C call
holding the GIL) still ends in ``MemoryError``, only later. The kernel says so in one line.
"""

from __future__ import annotations

import ctypes
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
           "is checked every {period:g} s and a MemoryError raised past {limit} more than at the start")
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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fired = False
        self._target = threading.get_ident()  # the thread that runs the work
        self._psutil: Any = None
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
        self._psutil = sys.modules.get("psutil")
        if self._psutil is None:
            return
        rss = self._psutil.Process().memory_info().rss
        self._cap = rss + self.extra
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in kilobytes on Linux, bytes on macOS: the peak is never below the present.
        self._scale = 1 if peak >= rss else 1024
        self._peak_before = peak * self._scale
        threading.Thread(target=self._run, name="nbtimeout-memory", daemon=True).start()

    def _run(self) -> None:
        process = self._psutil.Process()
        while not self._stop.wait(PERIOD):
            with self._lock:
                if self._stop.is_set():
                    return
                if process.memory_info().rss > self._cap:
                    self._fired = True
                    # Raised in the work's thread at its next bytecode, as a real MemoryError would be.
                    _async_raise(self._target, MemoryError)
            if self._fired:
                self._stop.wait(0.5)  # time to unwind and free before looking again

    def settle(self, raising: bool) -> None:
        if self._psutil is None:
            return
        with self._lock:
            self._stop.set()
            if self._fired:
                _async_raise(self._target, None)  # one still pending must not land in nbtimeout's code
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * self._scale
        over = self._fired or (peak > self._cap and peak > self._peak_before)
        self._fired = False
        if raising and over:
            from .._units import format_size

            raise MemoryError(EXCEEDED.format(limit=format_size(self.extra)))

    def release(self) -> None:
        self._stop.set()
        if enforced():
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


def _async_raise(thread: int, error: type[BaseException] | None) -> None:
    """Raise ``error`` in ``thread`` at its next bytecode; None clears one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                               ctypes.py_object(error) if error else None)


def _address_space() -> int:
    assert PROC_STATUS is not None
    with open(PROC_STATUS) as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0
