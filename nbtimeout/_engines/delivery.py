"""How a due deadline stops its code: a private signal to the main thread, or an exception set in
the deadline's own thread. The watchdog picks neither: each deadline carries the one chosen for it.

Both raise only where the limited block's own code runs: never inside nbtimeout's bookkeeping
(that would leave a deadline half-cancelled), never inside a trace or profile function (CPython
drops a tracer that raises), never at a debugger prompt (the limit waits while a debugger is
active), and never while the block's coroutine or generator is suspended (the event loop or the
consumer runs then).
"""

from __future__ import annotations

import _signal
import ctypes
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from .._errors import NO_ASYNC_EXC, NO_SIGNAL, NO_SIGNAL_THREAD, SIGNAL_TAKEN, _Expired
from .._where import PACKAGE_DIR
from . import forcing, ktimer, landing, watchdog
from .watchdog import AWAY, BUSY, GONE, HOLD, SENT, STOPPED, Deadline

# nbtimeout frames that only call user code (the decorator's wrapper). Innermost at the stop, they
# mean a C function of the user's is running (``timeout(1)(time.sleep)``): stop there.
CALLERS: set[CodeType] = set()
# Where arming and cancelling happen: the engines and the API over them.
BOOKKEEPING = {os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
               for name in ("alarm.py", "watchdog.py", "delivery.py")} | {os.path.join(PACKAGE_DIR, "_api.py")}


def classify(frame: FrameType | None, deadline: Deadline, tracers: tuple[Any, Any]) -> str:
    """May ``deadline``'s stop be raised in code whose innermost frame is ``frame``? A verdict."""
    if frame is None:
        return GONE
    code = frame.f_code
    if code not in CALLERS and code.co_filename.startswith(PACKAGE_DIR):
        return BUSY  # nbtimeout's bookkeeping (a limit being armed or cancelled)
    debuggers = _debugger_files()
    tracer_codes = set()
    for tracer in tracers:
        if tracer is not None:
            if debuggers and _is_debugger(tracer):
                return HOLD  # pdb stepping through the block
            tracer_codes.add(_code_of(tracer))
    owner = deadline.owner
    while frame is not None:
        if frame is owner:
            return STOPPED
        code = frame.f_code
        if code in tracer_codes:
            return BUSY
        if code.co_filename in BOOKKEEPING and code not in CALLERS:
            return BUSY  # our arm or cancel, inside a call it makes (starting the watchdog, say)
        if debuggers and code.co_filename in debuggers:
            return HOLD  # at a pdb / %debug prompt inside the block
        frame = frame.f_back
    return STOPPED if owner is None else AWAY


def _code_of(func: Any) -> CodeType | None:
    func = getattr(func, "__func__", func)
    return getattr(func, "__code__", None)


_debuggers: tuple[Any, frozenset[str]] = (None, frozenset())


def _debugger_files() -> frozenset[str]:
    """The files of pdb and bdb once imported (a frame of theirs: a debugger is at work)."""
    global _debuggers
    bdb = sys.modules.get("bdb")
    if bdb is not _debuggers[0]:
        files = {getattr(sys.modules.get(name), "__file__", None) for name in ("bdb", "pdb")}
        _debuggers = (bdb, frozenset(f for f in files if f))
    return _debuggers[1]


def _is_debugger(tracer: Any) -> bool:
    bdb = sys.modules.get("bdb")
    return bdb is not None and isinstance(getattr(tracer, "__self__", None), bdb.Bdb)


class _AsyncExpired(_Expired):
    """The thread engine's stop. Made in the stopped thread (where it is raised or first caught):
    past the grace, from there on it is raised at every line of the block (see forcing.py)."""

    deadline: Deadline

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        deadline = self.deadline
        # A refire, not the first stop (the watchdog notes raised_at as it sets the first one).
        if deadline.raised_at and time.monotonic() >= deadline.raised_at + max(deadline.grace, watchdog.REFIRE) \
                and not deadline.cancelled:
            forcing.force(deadline, sys._getframe(1), classify)


class ThreadDelivery:
    """``PyThreadState_SetAsyncExc``: the stop is raised in the deadline's thread, any thread."""

    name = "thread"

    def __init__(self) -> None:
        api = getattr(ctypes, "pythonapi", None)
        self._set: Callable[..., int] | None = getattr(api, "PyThreadState_SetAsyncExc", None)

    def unavailable(self) -> str | None:
        return NO_ASYNC_EXC if self._set is None else None

    def prepare(self, deadline: Deadline) -> None:
        # Another thread's trace function cannot be read from the watchdog: note this one's now.
        deadline.tracer = (sys.gettrace(), sys.getprofile())
        forcing.watch_unraisable(classify)

    def deliver(self, deadline: Deadline) -> str:
        # The thread raises the stop itself, where it lands (landing.py), where it can.
        if landing.available() and (verdict := landing.deliver(deadline, classify)) is not None:
            return verdict
        frame = watchdog.running(deadline.ident)
        verdict = classify(frame, deadline, deadline.tracer or (None, None))
        if verdict != STOPPED:
            return verdict
        if deadline.kind is None:  # the exception class carries its deadline: an async exc has no args
            deadline.kind = type("_Expired", (_AsyncExpired,), {"deadline": deadline})
        args = (ctypes.c_ulong(deadline.ident), ctypes.py_object(deadline.kind))
        # The thread raises where it is paused now. Threads switch only after a call returns or at
        # a loop's jump: from the second look at its frames to the call that sets the stop there
        # is none, so the stop never lands in code that classify did not see (nbtimeout's exit, a
        # block cancelled meanwhile). If the thread moved on, look again in a moment.
        now = sys._current_frames()
        try:  # a subscript, not .get(): a call returning could switch threads
            done = self._set(*args) if now[deadline.ident] is frame and not deadline.cancelled else -1
        except KeyError:
            return GONE
        return STOPPED if done > 0 else BUSY if done < 0 else GONE


class SignalDelivery:
    """``pthread_kill`` of a private signal to the main thread; its handler raises the stop.

    A real-time signal where there are any (none of them is SIGALRM, so code that uses SIGALRM
    keeps its alarm and cannot remove ours), else SIGURG, whose default action is to be ignored.
    """

    name = "signal"

    def __init__(self, fallback: ThreadDelivery) -> None:
        self._fallback = fallback
        self.signum: int | None = None
        self._chosen = self._installed = False
        self._timer: ktimer.KernelTimer | bool | None = None  # False: none can be made here

    def _choose(self) -> int | None:
        candidates = []
        low, high = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
        if low is not None and high is not None:
            candidates += range(high - 2, low + 1, -1)  # the ends are what other libraries take first
        if hasattr(signal, "SIGURG"):
            candidates.append(signal.SIGURG)
        for signum in candidates:
            if signal.getsignal(signum) == signal.SIG_DFL:
                return int(signum)
        return None

    def unavailable(self) -> str | None:
        if not hasattr(signal, "pthread_kill"):
            return NO_SIGNAL
        if threading.get_ident() != threading.main_thread().ident:
            return NO_SIGNAL_THREAD.format(thread=threading.current_thread().name)
        if not self._chosen:
            self.signum, self._chosen = self._choose(), True
        return NO_SIGNAL if self.signum is None else None

    def prepare(self, deadline: Deadline) -> None:
        # On the main thread: install the handler; if code of the user's put one of its own on
        # the signal since, theirs stays and ours moves to another free signal, said in one line.
        current = _signal.getsignal(self.signum)  # _signal's: no enum conversion
        if current is not _on_signal:
            if self._installed and current != signal.SIG_DFL:
                self._move()
            if self.signum is not None:
                signal.signal(self.signum, _on_signal)
                self._installed = True
                watchdog.kernel_timed = self
        forcing.watch_unraisable(classify)
        self.timed()  # made here, on the main thread, before the watchdog could look for it

    def _move(self) -> None:
        old, timer = self.signum, self._timer
        if timer:
            with timer.lock:
                timer.at_never()  # it must not send theirs
        self._timer, self.signum = None, self._choose()
        # None free: the thread engine's delivery stops the main thread's blocks (see deliver).
        print(SIGNAL_TAKEN.format(old=old, new=self.signum or "the thread engine's exception"), file=sys.stderr)

    def armed(self, deadline: Deadline) -> None:
        """On the main thread, as ``deadline`` is armed: the kernel timer signals by its due time.

        Set here, not by the watchdog: a C call that holds the GIL from the block's first line
        would keep the watchdog from ever setting it, and no stop would follow when the call returns."""
        if self.timed():
            self._timer.by(deadline.expires, deadline.started)

    def rearm(self, stack: list[Deadline] | None, now: float) -> None:
        """In the handler: the next deadline not yet due gets its signal (this one may have been an
        earlier deadline's, since cancelled). The lock may be held by the code interrupted: then
        the watchdog sets it."""
        if stack and self.timed():
            soonest = min((d.expires for d in stack if d.engine is self and not d.fired and not d.cancelled
                           and d.expires > now), default=None)
            if soonest is not None:
                self._timer.by(soonest, now, wait=False)
                if not now < self._timer.armed_at <= soonest:
                    watchdog.ring()

    def timed(self) -> bool:
        """Whether a kernel timer sends this signal (see ktimer.py)."""
        if self._timer is None:
            self._timer = (self.signum is not None and ktimer.make(self.signum)) or False
        return bool(self._timer)

    def ahead(self) -> None:
        """From the watchdog: have the kernel send the signal when the main thread's next
        deadline is due (none: never)."""
        if self.timed():
            self._timer.follow(_next_due)

    def deliver(self, deadline: Deadline) -> str:
        if self.signum is None or _signal.getsignal(self.signum) is not _on_signal:
            return self._fallback.deliver(deadline)  # replaced since: never send theirs, or a default action
        if suspended(deadline.owner, watchdog.running(deadline.ident)):
            return AWAY  # a generator holding the limit waits to be resumed: no signal to no purpose
        signal.pthread_kill(deadline.ident, self.signum)
        time.sleep(0)  # let go of the GIL: the stopped thread needs it to run the handler
        return SENT


THREAD = ThreadDelivery()
SIGNAL = SignalDelivery(THREAD)


def _next_due() -> float:
    """When the main thread's next signal deadline that has not fired is due (read by the watchdog)."""
    main = watchdog.stacks.get(threading.main_thread().ident) or ()
    return min((d.expires for d in list(main) if d.engine is SIGNAL and not d.fired and not d.cancelled),
               default=math.inf)


def suspended(owner: FrameType | None, frame: FrameType | None) -> bool:
    """Whether ``owner``, a generator's or coroutine's frame, is not among the frames from ``frame``
    (a thread's innermost) down: the block waits to be resumed."""
    if owner is None or not owner.f_code.co_flags & watchdog.SUSPENDABLE:
        return False
    while frame is not None:
        if frame is owner:
            return False
        frame = frame.f_back
    return True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Raise the stop of the outermost due deadline of the main thread whose block is running.

    Every due deadline is looked at: one whose block is suspended (a generator left inside its
    ``with``) or in its grace must not hide another that is due where the code runs now."""
    stack = watchdog.stacks.get(threading.get_ident())
    now = time.monotonic()
    tracers = None
    for deadline in list(stack or ()):
        if deadline.cancelled or deadline.engine is not SIGNAL or not (deadline.fired or deadline.expires <= now):
            continue  # not due (early), or not ours
        if deadline.raised_at and now < deadline.raised_at + deadline.grace:
            continue  # a second signal (the kernel timer's and the watchdog's) while cleanup has its grace
        deadline.fired = True
        if tracers is None:
            tracers = (sys.gettrace(), sys.getprofile())
        verdict = classify(frame, deadline, tracers)
        if verdict == STOPPED and forcing.in_unraisable(frame, deadline.owner):
            # In __del__ the stop would be reported and lost: raise it at the block's next line.
            forcing.force(deadline, frame, classify)
            deadline.raised_at = deadline.raised_at or now
            continue
        if verdict == STOPPED:
            if not deadline.raised_at:
                deadline.raised_at = now
            elif now >= deadline.raised_at + deadline.grace:
                forcing.force(deadline, frame, classify)  # swallowed after its grace: every line from now
            raise _Expired(deadline)
        watchdog.retry(deadline, verdict)
    SIGNAL.rearm(stack, now)


def _in_forked_child() -> None:
    # Timers are not inherited by fork(), and the child's main thread has another id.
    SIGNAL._timer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)
