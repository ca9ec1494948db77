"""The in-kernel engines, signal and thread: one arm/cancel pair over the watchdog's deadlines.

The engines differ only in how a due deadline is delivered (``delivery.py``): a private signal to
the main thread, or an exception set in the deadline's own thread. ``auto`` takes the signal where
it can be used (the main thread of a POSIX process) and the thread engine elsewhere (Windows,
kernel subshells, any other thread).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from .._errors import CellTimeoutError, EngineUnavailableError, _Expired
from .._where import trim_tail
from . import watchdog
from .delivery import CALLERS, SIGNAL, THREAD, SignalDelivery, ThreadDelivery
from .watchdog import REFIRE, Deadline, cancel

__all__ = ["GRACE", "REFIRE", "Deadline", "arm", "calls_user_code", "cancel", "check_available",
           "choose", "disarm", "fired", "limited"]

GRACE = 1.0  # seconds a stopped block's cleanup (finally:, __exit__) runs before the stop is raised again
_COROUTINE = 0x80 | 0x100 | 0x200  # CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR


def calls_user_code(func: Callable[..., object]) -> Callable[..., object]:
    """Mark ``func`` as a frame the stop may unwind: it runs no bookkeeping of ours."""
    CALLERS.add(func.__code__)
    return func


def choose(mode: str = "auto") -> SignalDelivery | ThreadDelivery:
    """The delivery for ``mode`` on the calling thread; EngineUnavailableError naming what works."""
    if mode != "thread":
        reason = SIGNAL.unavailable()
        if reason is None:
            return SIGNAL
        if mode == "signal":
            raise EngineUnavailableError(reason)
    reason = THREAD.unavailable()
    if reason is not None:
        raise EngineUnavailableError(reason)
    return THREAD


def check_available(mode: str = "auto") -> str:
    """The engine ``mode`` resolves to here ("signal" or "thread"), or EngineUnavailableError."""
    return choose(mode).name


def arm(limit: float, mode: str = "auto", grace: float = GRACE, owner: FrameType | None = None) -> Deadline:
    """Start a deadline ``limit`` seconds from now for the block running in frame ``owner``.

    Its stop is raised only while ``owner`` runs (None: anywhere on this thread).
    """
    engine = choose(mode)
    if engine is SIGNAL:
        if not watchdog.stacks.get(threading.get_ident()):
            engine.prepare(None)
        deadline = watchdog.arm(limit, engine, grace, owner)
        engine.armed(deadline)
    else:
        deadline = watchdog.arm(limit, engine, grace, owner)
        engine.prepare(deadline)
    if owner is not None and owner.f_code.co_flags & _COROUTINE:
        _note_task(deadline)
    return deadline


def _note_task(deadline: Deadline) -> None:
    # A coroutine's block: while it waits in the event loop, the stop is the cancel of its task.
    asyncio = sys.modules.get("asyncio")
    loop = asyncio and asyncio._get_running_loop()
    task = loop and asyncio.current_task(loop)
    if task is not None and _driven_by(task, deadline.owner):
        deadline.loop, deadline.task = loop, task


def _driven_by(task: Any, owner: FrameType | None) -> bool:
    """Whether the coroutine of ``owner`` runs as a step of ``task``: from it down to the task's
    coroutine, every frame is a coroutine or generator awaiting the next. One stepped by hand
    (``coro.send(None)`` in a cell) is not: cancelling the task running the cell would stop the kernel's."""
    get_coro = getattr(task, "get_coro", None)
    coro = get_coro() if get_coro is not None else None
    top = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    frame = owner
    while frame is not None and frame.f_code.co_flags & watchdog.SUSPENDABLE:
        if frame is top:
            return True
        frame = frame.f_back
    return False


def fired(deadline: Deadline) -> bool:
    """Whether ``deadline`` expired and its stop was delivered (however the code took it)."""
    return deadline.fired


def disarm(deadline: Deadline, exc: BaseException | None, tb: TracebackType | None) -> bool:
    """End ``deadline`` as a with-block ends: CellTimeoutError if it is what stopped the body."""
    __tracebackhide__ = True
    stack = watchdog.stacks.get(deadline.ident) or []
    inner = stack[stack.index(deadline) + 1:] if deadline in stack else []
    task = deadline.task
    cancel(deadline)
    if isinstance(exc, _Expired):
        by = exc.args[0] if exc.args else getattr(exc, "deadline", None)
        # A stop of an inner block whose exit could not convert it (it landed as that exit began).
        if by is deadline or by in inner:
            raise _timeout_error(by, exc, tb) from None
        return False
    if deadline.task_cancelled and exc is not None and type(exc).__name__ == "CancelledError":
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: was it only our cancel?
        if uncancel is None or uncancel() == 0:
            raise _timeout_error(deadline, exc, tb) from None
    return False


def _timeout_error(deadline: Deadline, exc: BaseException, tb: TracebackType | None) -> CellTimeoutError:
    # Where the limit hit: the first stop of this deadline, not a refire that landed in cleanup.
    first, earlier = exc, exc.__context__
    while isinstance(earlier, _Expired) and (earlier.args[:1] == (deadline,)
                                             or getattr(earlier, "deadline", None) is deadline):
        first, earlier = earlier, earlier.__context__
    error = CellTimeoutError(deadline.limit, time.monotonic() - deadline.started, deadline.engine.name)
    return error.with_traceback(trim_tail(tb if first is exc else first.__traceback__))


class limited:  # noqa: N801 - reads as a with-statement
    """``with limited(0.5):`` raises CellTimeoutError (with the body's traceback) past 0.5 s.

    Also ``async with``: in a coroutine the stop is raised while its code runs, and its task is
    cancelled while it waits; either way the block ends in CellTimeoutError.
    """

    __slots__ = ("_deadline", "grace", "mode", "seconds")

    def __init__(self, seconds: float, mode: str = "auto", grace: float = GRACE) -> None:
        self.seconds, self.mode, self.grace = seconds, mode, grace

    def __enter__(self) -> Deadline:
        self._deadline = arm(self.seconds, self.mode, self.grace, sys._getframe(1))
        return self._deadline

    def __exit__(self, etype: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        __tracebackhide__ = True
        return disarm(self._deadline, exc, tb)

    async def __aenter__(self) -> Deadline:
        self._deadline = arm(self.seconds, self.mode, self.grace, sys._getframe(1))
        return self._deadline

    async def __aexit__(self, etype: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        __tracebackhide__ = True
        return disarm(self._deadline, exc, tb)


def __getattr__(name: str) -> Any:
    if name == "_stack":  # the main thread's deadlines, as tests and older callers read them
        return watchdog.stacks.get(threading.main_thread().ident, [])
    raise AttributeError(name)
