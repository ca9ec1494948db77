"""Raw baselines: what the operating system allows, with no library in the way."""

from __future__ import annotations

import os
import signal
import time

import numpy as np


def setitimer_arm_cancel() -> None:
    """Install a handler, arm an itimer, cancel it, put the handler back."""
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def fork_round_trip() -> int:
    """fork, the child writes a small value to a pipe and exits, the parent reads and reaps."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"42")
        os._exit(0)
    os.close(w)
    value = int(os.read(r, 16))
    os.close(r)
    os.waitpid(pid, 0)
    return value


def fork_kill_c_loop(deadline: float) -> float:
    """Fork a child in a GIL-holding C loop, SIGKILL it at ``deadline``; seconds past the deadline."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        sum(range(10**10))
        os._exit(0)
    fd = os.pidfd_open(pid)
    import select

    select.select([fd], [], [], deadline)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)
    return time.monotonic() - start - deadline


def pipe_throughput(nbytes: int) -> float:
    """Bytes per second of one array sent from a forked child through an OS pipe."""
    data = np.ones(nbytes, dtype=np.uint8)
    r, w = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        os._exit(0)
    os.close(w)
    out = bytearray(nbytes)
    view, got = memoryview(out), 0
    while got < nbytes:
        got += os.readv(r, [view[got:]])
    os.close(r)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    return nbytes / elapsed
