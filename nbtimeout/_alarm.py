"""Signal engine: a stack of deadlines over one ``setitimer(ITIMER_REAL)``.

Arming the first deadline saves the SIGALRM handler and any running itimer; cancelling the last
one stops the timer *before* putting the handler back (SIGALRM under ``SIG_DFL`` kills the
kernel), then restarts the saved itimer with the time it has left.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType, TracebackType

from ._errors import NO_SIGALRM, NO_SIGNAL_THREAD, CellTimeoutError, EngineUnavailableError, _Expired
from ._where import describe_where, frames_of, trim_tail

_HERE = os.path.dirname(os.path.abspath(__file__))

# A fired deadline whose _Expired was swallowed (a bare ``except:``) fires again this often.
REFIRE = 0.05


@dataclass(eq=False)
class Deadline:
    limit: float
    expires: float
    fired: bool = False
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Saved:
    handler: object
    delay: float
    interval: float
    at: float


_stack: list[Deadline] = []
_saved: _Saved | None = None
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
    check_available()
    now = time.monotonic()
    if not _stack:
        delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
        _saved = _Saved(signal.getsignal(signal.SIGALRM), delay, interval, now)
        signal.signal(signal.SIGALRM, _on_alarm)
    deadline = Deadline(limit, now + limit, started=now)
    _stack.append(deadline)
    _schedule()
    return deadline


def cancel(deadline: Deadline) -> None:
    """Stop ``deadline``; after the last one, restore the saved handler and itimer."""
    global _saved
    if deadline in _stack:
        _stack.remove(deadline)
    if _stack:
        _schedule()
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    saved, _saved = _saved, None
    if saved is None:
        return
    signal.signal(signal.SIGALRM, saved.handler)
    if saved.delay:
        left = saved.delay - (time.monotonic() - saved.at)
        # A timer that would have fired meanwhile fires now, as late as we held it.
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), saved.interval)


def _schedule(floor: float = 1e-6) -> None:
    now = time.monotonic()
    pending = [d.expires for d in _stack if not d.fired]
    pending += [now + REFIRE for d in _stack if d.fired]
    if pending:
        signal.setitimer(signal.ITIMER_REAL, max(min(pending) - now, floor))


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if frame is not None and frame.f_code not in _CALLERS and frame.f_code.co_filename.startswith(_HERE):
        # Never unwind nbtimeout's own bookkeeping (a limit being cancelled): try again shortly.
        _schedule(floor=1e-3)
        return
    now = time.monotonic()
    # The outermost expired deadline wins: an inner handler must not absorb an outer limit.
    due = next((d for d in _stack if d.expires <= now), None)
    if due is None:  # early wake-up (timer granularity): go back to sleep
        _schedule()
        return
    due.fired = True
    _schedule()
    raise _Expired(due)


class limited:  # noqa: N801 - reads as a with-statement
    """``with limited(0.5):`` raises CellTimeoutError (with the body's traceback) past 0.5 s."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Deadline:
        self._deadline = arm(self.seconds)
        return self._deadline

    def __exit__(self, etype: type | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        __tracebackhide__ = True
        deadline = self._deadline
        cancel(deadline)
        if isinstance(exc, _Expired) and exc.token is deadline:
            elapsed = time.monotonic() - deadline.started
            error = CellTimeoutError(deadline.limit, elapsed, "signal",
                                     where=describe_where(frames_of(tb)))
            raise error.with_traceback(trim_tail(tb)) from None
        return False
