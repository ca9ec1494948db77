"""Threads of the kernel seen from a forked child, where they do not exist.

``fork()`` copies only the forking thread. A ``ThreadPoolExecutor`` made in an earlier cell still
lists its worker threads in the child, so work submitted there would wait forever; a
``Thread.join()`` on a kernel thread would return at once, as if it had finished. In the child:

- a ``ThreadPoolExecutor`` made in the kernel hands work submitted in the child to a stand-in with
  its settings, whose threads run in the child (work the kernel had queued stays the kernel's), so
  ``ex.submit(f).result()`` and ``ex.map`` give what they give in the kernel; ``shutdown()`` shuts
  the stand-in down and marks the kernel's pool shut, as it would be;
- ``Thread.join()`` on a thread that runs in the kernel, and ``submit`` on a ``ProcessPoolExecutor``
  whose manager thread runs in the kernel, raise a one-line RuntimeError instead of hanging or
  lying.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import weakref
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
    pool = concurrent.futures.ThreadPoolExecutor
    processes = concurrent.futures.ProcessPoolExecutor
    init, submit, shutdown = pool.__init__, pool.submit, pool.shutdown
    process_submit, join = processes.submit, threading.Thread.join

    def pool_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _made_here.add(self)

    def pool_submit(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if self in _made_here or self._shutdown:  # ours, or refused as the kernel would refuse it
            return submit(self, fn, *args, **kwargs)
        stand_in = _stand_in(self)
        future = submit(stand_in, fn, *args, **kwargs)
        for thread in stand_in._threads:
            # nbtimeout's, not the cell's: the kernel's pool keeps its own threads, so the warning
            # about threads a cell leaves running (they stop with the child) is not about these
            if type(thread) is threading.Thread:
                thread.__class__ = _StandInThread
        return future

    def pool_shutdown(self: Any, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self in _made_here:
            return shutdown(self, wait, cancel_futures=cancel_futures)
        stand_in = _stand_ins.pop(id(self), None)
        if stand_in is not None:
            shutdown(stand_in, wait, cancel_futures=cancel_futures)
        self._shutdown = True  # refuses work from now on, as the kernel's pool would (carried back)
        return None

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

    pool.__init__ = pool_init  # type: ignore[method-assign]
    pool.submit = pool_submit  # type: ignore[method-assign]
    pool.shutdown = pool_shutdown  # type: ignore[method-assign]
    processes.submit = process_pool_submit  # type: ignore[method-assign]
    threading.Thread.join = thread_join  # type: ignore[method-assign]


# Thread pools made in the child; one made in the kernel gets a stand-in here, with its settings,
# so the kernel's object is never changed by using it (the fork cell would carry that back).
_made_here: weakref.WeakSet[Any] = weakref.WeakSet()
_stand_ins: dict[int, Any] = {}


class _StandInThread(threading.Thread):
    """A worker thread of a stand-in pool."""


def _stand_in(executor: Any) -> Any:  # pragma: no cover - runs in the child
    stand_in = _stand_ins.get(id(executor))
    if stand_in is None:
        stand_in = _stand_ins[id(executor)] = concurrent.futures.ThreadPoolExecutor(
            max_workers=executor._max_workers, thread_name_prefix=executor._thread_name_prefix,
            initializer=executor._initializer, initargs=executor._initargs)
    return stand_in


# Where a child waits when it waits on another thread: a lock, condition, event, queue or future.
_WAITS = ("threading.py", "queue.py", "concurrent/futures/")


def waiting_hint(where: str, frames: list[tuple[str, int, str]]) -> str:
    """``where`` a stopped fork child was, plus the likely cause if it was waiting on a thread."""
    if not frames or not any(part in frames[-1][0] for part in _WAITS):
        return where
    return (f"{where}; waiting in {frames[-1][2]}() of {frames[-1][0].rsplit('/', 1)[-1]}: threads "
            "started in the kernel do not run in a fork cell")
