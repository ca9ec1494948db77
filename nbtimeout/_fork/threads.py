"""Threads of the kernel seen from a forked child, where they do not exist.

``fork()`` copies only the forking thread. A ``ThreadPoolExecutor`` made in an earlier cell still
lists its worker threads in the child, so work submitted there would wait forever; a
``Thread.join()`` on a kernel thread would return at once, as if it had finished. In the child:

- a ``ThreadPoolExecutor`` whose threads are the kernel's starts fresh threads in the child (work
  the kernel had queued stays the kernel's), so ``ex.submit(f).result()`` gives what it gives in
  the kernel;
- ``Thread.join()`` on a thread that runs in the kernel, and ``submit`` on a ``ProcessPoolExecutor``
  whose manager thread runs in the kernel, raise a one-line RuntimeError instead of hanging or
  lying.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading
from typing import Any

_alive_at_fork: list[threading.Thread] = []


def _note_threads() -> None:
    _alive_at_fork[:] = [t for t in threading.enumerate() if t is not threading.current_thread()]


def _forget_threads() -> None:  # the kernel keeps no reference to threads that end
    _alive_at_fork.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_note_threads, after_in_parent=_forget_threads)


def _kernel_thread(thread: Any) -> bool:
    return any(thread is t for t in _alive_at_fork)


def guard_kernel_threads() -> None:  # pragma: no cover - runs in the child
    """In the child, before user code: patch the classes as the module's docstring says."""
    kernel_threads = list(_alive_at_fork)
    if not kernel_threads:
        return
    pool = concurrent.futures.ThreadPoolExecutor
    processes = concurrent.futures.ProcessPoolExecutor
    submit, process_submit, join = pool.submit, processes.submit, threading.Thread.join

    def thread_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if any(_kernel_thread(t) for t in getattr(self, "_threads", ())):
            _start_afresh(self)
        return submit(self, *args, **kwargs)

    def process_pool_submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _kernel_thread(getattr(self, "_executor_manager_thread", None)):
            raise RuntimeError("nbtimeout: this ProcessPoolExecutor runs in the kernel and cannot take "
                               "work from a fork cell; create it in the cell, or use a signal-mode cell")
        return process_submit(self, *args, **kwargs)

    def thread_join(self: threading.Thread, timeout: float | None = None) -> None:
        if _kernel_thread(self):
            raise RuntimeError(f"nbtimeout: thread {self.name!r} runs in the kernel, not in this fork "
                               "cell's child process; join it from a cell without -m fork")
        join(self, timeout)

    pool.submit = thread_submit  # type: ignore[method-assign]
    processes.submit = process_pool_submit  # type: ignore[method-assign]
    threading.Thread.join = thread_join  # type: ignore[method-assign]


def _start_afresh(executor: Any) -> None:  # pragma: no cover - runs in the child
    """Make ``executor`` forget the kernel's threads and queue; its next submit starts threads here."""
    executor._threads = set()
    executor._idle_semaphore = threading.Semaphore(0)
    executor._work_queue = queue.SimpleQueue()
    executor._shutdown_lock = threading.Lock()  # a kernel thread may have held it at the fork


# Where a child waits when it waits on another thread: a lock, condition, event, queue or future.
_WAITS = ("threading.py", "queue.py", "concurrent/futures/")


def waiting_hint(where: str, frames: list[tuple[str, int, str]]) -> str:
    """``where`` a stopped fork child was, plus the likely cause if it was waiting on a thread."""
    if not frames or not any(part in frames[-1][0] for part in _WAITS):
        return where
    return (f"{where}; waiting in {frames[-1][2]}() of {frames[-1][0].rsplit('/', 1)[-1]}: threads "
            "started in the kernel do not run in a fork cell")
