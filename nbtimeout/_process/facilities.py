"""Which process facilities this platform offers: the one place that decides fast path or fallback.

Every Linux-only facility nbtimeout uses is optional. ``NBTIMEOUT_PORTABLE=1`` in the environment
(read here, once, at import) makes nbtimeout use only what macOS also has, so the fallbacks can be
tested on Linux: no ``pidfd_open``, no ``prctl``, no ``/proc``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

PORTABLE: bool = os.environ.get("NBTIMEOUT_PORTABLE", "").strip() not in ("", "0")

def _libc() -> Any:
    try:
        return ctypes.CDLL(None)  # the C library this process already loaded
    except (OSError, TypeError):  # Windows: no such handle (and no fork to use it for)
        return None


LIBC: Any = _libc()
PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., Any] | None:
    return None if PORTABLE or LIBC is None else getattr(LIBC, "prctl", None)


# A pidfd becomes readable when the process exits: an exact exit event (Linux 5.3+, Python 3.9+).
HAS_PIDFD: bool = not PORTABLE and hasattr(os, "pidfd_open")
# prctl(PR_SET_PDEATHSIG): the child gets a signal when its parent dies (Linux): a second line of
# defence behind the guard process (see guard.py).
PRCTL: Callable[..., Any] | None = _prctl()
# The address space a process maps now (VmSize), needed to cap it with RLIMIT_AS without making
# every cell fail; where it cannot be read, RLIMIT_AS is not used (macOS does not enforce it anyway).
PROC_STATUS: str | None = None if PORTABLE or not os.path.exists("/proc/self/status") else "/proc/self/status"


def describe() -> dict[str, bool]:
    """What is in use, for tests and bug reports."""
    return {"portable": PORTABLE, "pidfd": HAS_PIDFD, "prctl": PRCTL is not None,
            "proc_status": PROC_STATUS is not None}
