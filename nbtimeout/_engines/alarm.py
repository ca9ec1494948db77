"""Signal engine: a stack of deadlines over one ``setitimer(ITIMER_REAL)``.

Arming the first deadline saves the SIGALRM handler and any running itimer; cancelling the last
one stops the timer *before* putting the handler back (SIGALRM under ``SIG_DFL`` kills the
kernel), then restarts the saved itimer with the time it has left.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType, TracebackType
from typing import Any

from .._errors import NO_SIGALRM, NO_SIGNAL_THREAD, CellTimeoutError, EngineUnavailableError, _Expired
from .._where import PACKAGE_DIR as _HERE
from .._where import trim_tail

# A fired deadline whose _Expired was swallowed (a bare ``except:``) fires again this often.
REFIRE = 0.05


class Deadline:
    """One armed limit: seconds, when it started and expires (monotonic), whether it fired."""

    __slots__ = ("expires", "fired", "limit", "started")

    def __init__(self, limit: float, now: float) -> None:
        self.limit, self.started, self.expires, self.fired = limit, now, now + limit, False


_stack: list[Deadline] = []
# While any deadline is armed: the SIGALRM handler, the itimer (delay, interval) and when we took it.
_saved: tuple[Any, float, float, float] | None = None
# nbtimeout frames that only call user code (the decorator's wrapper). Innermost at the alarm, they
# mean a C function of the user's is running (``timeout(1)(time.sleep)``): unwind, do not defer.
_CALLERS: set[CodeType] = set()


def calls_user_code(func: Callable[..., object]) -> Callable[..., object]:
    """Mark ``func`` as a frame the alarm may unwind: it runs no bookkeeping of ours."""
    _CALLERS.add(func.__code__)
    return func


def check_available() -> None:
    """Raise EngineUnavailableError when SIGALRM cannot be used from here."""
    if not hasattr(signal, "setitimer"):
        raise EngineUnavailableError(NO_SIGALRM)
    if threading.current_thread() is not threading.main_thread():
        raise EngineUnavailableError(NO_SIGNAL_THREAD.format(thread=threading.current_thread().name))


def arm(limit: float) -> Deadline:
    """Start a deadline ``limit`` seconds from now; nests inside any already armed."""
    global _saved
    now = time.monotonic()
    deadline = Deadline(limit, now)
    if _stack:
        _stack.append(deadline)
        _schedule()
        return deadline
    try:
        setitimer = signal.setitimer  # looked up first: nothing may change if it is missing
        handler = signal.signal(signal.SIGALRM, _on_alarm)
    except (AttributeError, ValueError):  # no SIGALRM here, or not the main thread: say which
        check_available()
        raise
    # One call arms ours and hands back the itimer that was running, to restart it afterwards.
    delay, interval = setitimer(signal.ITIMER_REAL, limit, REFIRE)
    _saved = (handler, delay, interval, now)
    _stack.append(deadline)
    return deadline


def cancel(deadline: Deadline) -> None:
    """Stop ``deadline``; after the last one, restore the saved handler and itimer."""
    global _saved
    if _stack and _stack[-1] is deadline:
        _stack.pop()
    elif deadline in _stack:
        _stack.remove(deadline)
    if _stack:
        _schedule()
        return
    signal.setitimer(signal.ITIMER_REAL, 0)  # before the handler: SIGALRM under SIG_DFL kills
    saved, _saved = _saved, None
    if saved is None:
        return
    handler, delay, interval, at = saved
    signal.signal(signal.SIGALRM, handler)
    if delay:
        # A timer that would have fired meanwhile fires now, as late as we held it.
        signal.setitimer(signal.ITIMER_REAL, max(delay - (time.monotonic() - at), 1e-6), interval)


def disarm(deadline: Deadline, exc: BaseException | None, tb: TracebackType | None) -> bool:
    """End ``deadline`` as a with-block ends: CellTimeoutError if it is what stopped the body."""
    __tracebackhide__ = True
    cancel(deadline)
    if isinstance(exc, _Expired) and exc.args[0] is deadline:
        error = CellTimeoutError(deadline.limit, time.monotonic() - deadline.started, "signal")
        raise error.with_traceback(trim_tail(tb)) from None
    return False


def _schedule(floor: float = 1e-6) -> None:
    now = time.monotonic()
    soonest = min(now + REFIRE if d.fired else d.expires for d in _stack)
    signal.setitimer(signal.ITIMER_REAL, max(soonest - now, floor), REFIRE)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if frame is not None and frame.f_code not in _CALLERS and frame.f_code.co_filename.startswith(_HERE):
        # Never unwind nbtimeout's own bookkeeping (a limit being cancelled): try again shortly.
        _schedule(floor=1e-3)
        return
    now = time.monotonic()
    # The outermost expired deadline wins: an inner handler must not absorb an outer limit.
    for due in _stack:
        if due.expires <= now:
            # The itimer's interval fires again every REFIRE seconds until the deadline is
            # cancelled, in case a bare ``except:`` swallows what we raise.
            due.fired = True
            raise _Expired(due)
    _schedule()  # early wake-up (timer granularity): go back to sleep


class limited:  # noqa: N801 - reads as a with-statement
    """``with limited(0.5):`` raises CellTimeoutError (with the body's traceback) past 0.5 s."""

    __slots__ = ("_deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Deadline:
        self._deadline = arm(self.seconds)
        return self._deadline

    def __exit__(self, etype: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        __tracebackhide__ = True
        return disarm(self._deadline, exc, tb)
