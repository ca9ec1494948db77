"""One watchdog thread for every in-kernel deadline: a heap of due times, one delivery per deadline.

Arming appends to a per-thread stack and to a queue the watchdog drains; cancelling sets a flag
and pops. Only C-level containers (list, deque, a lock used as a doorbell) and attribute stores are used on those
paths, so a stop raised between any two of their steps leaves nothing half-changed, and no lock is
taken that a signal handler could deadlock on. The watchdog wakes at the soonest due time and asks
the deadline's delivery (``delivery.py``) to stop the code; what it answers sets the next due time:
the grace for cleanup after a stop, a refire after that, a short retry while nbtimeout's own
bookkeeping runs.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import sys
import threading
import time
from collections import deque
from types import FrameType
from typing import Any

# After a stop, ``finally:`` blocks and ``__exit__`` get ``grace`` seconds; then the stop is raised
# again every REFIRE seconds, in case a bare ``except:`` swallowed it.
REFIRE = 0.05
# While the stopped code runs nbtimeout's own bookkeeping, or a trace function: try again this soon.
RETRY = 0.001

SUSPENDABLE = 0x20 | 0x80 | 0x100 | 0x200  # CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR

# Verdicts of a delivery: what the stopped thread was doing.
STOPPED = "stopped"  # the stop was raised in the thread
SENT = "sent"        # a signal is on its way; its handler decides (and tells us through ``retry``)
BUSY = "busy"        # nbtimeout's bookkeeping or a trace function: retry at once
HOLD = "hold"        # a debugger is active: the limit waits
AWAY = "away"        # the block's frame is not running (suspended coroutine or generator, or gone)
GONE = "gone"        # the thread or the block no longer exists: forget the deadline


class Deadline:
    """One armed limit. ``fired`` turns True once it expired and its stop was delivered."""

    __slots__ = ("cancelled", "due", "engine", "expires", "fired", "forcer", "grace", "ident", "kind", "limit", "line",
                 "loop", "owner", "raised_at", "started", "task", "task_cancelled", "tracer")

    def __init__(self, limit: float, now: float, engine: Any, grace: float, ident: int,
                 owner: FrameType | None) -> None:
        self.limit, self.started, self.expires = limit, now, now + limit
        self.due = self.expires
        self.engine, self.grace, self.ident, self.owner = engine, grace, ident, owner
        self.fired = self.cancelled = self.task_cancelled = False
        self.raised_at = 0.0
        self.kind = self.loop = self.task = self.tracer = self.forcer = None
        self.line = owner.f_lineno if owner is not None else 0  # the with-statement's: its exit runs there


# thread ident -> the deadlines armed on that thread, outermost first
stacks: dict[int, list[Deadline]] = {}
_pending: deque[Deadline] = deque()                 # armed since the watchdog last looked
_retry: deque[tuple[Deadline, str]] = deque()       # a signal handler could not stop here: why
# A lock used as a doorbell: released (rung) to wake the watchdog early, acquired by its wait.
# (SimpleQueue.get(timeout) can block for good once an interrupted wait runs past its deadline.)
_bell = threading.Lock()
_bell.acquire()
_wake_at = math.inf  # when the watchdog looks next; -inf while it is awake and will look anyway
_thread: threading.Thread | None = None
errors: deque[str] = deque(maxlen=8)  # what went wrong in the watchdog (it carries on): tracebacks
# The delivery whose ``ahead(when)`` has a kernel timer send its signal at ``when`` (the signal one).
kernel_timed: Any = None


def arm(limit: float, engine: Any, grace: float, owner: FrameType | None) -> Deadline:
    """Start a deadline on the calling thread, nested in any already armed there."""
    ident = threading.get_ident()
    deadline = Deadline(limit, time.monotonic(), engine, grace, ident, owner)
    stack = stacks.get(ident)
    if stack is None:
        stacks[ident] = stack = []
    elif stack and stack[-1].cancelled:  # left behind by a block that could not cancel (see cancel)
        while stack and stack[-1].cancelled:
            stack.pop()
    stack.append(deadline)
    _pending.append(deadline)
    if deadline.expires < _wake_at:
        if _thread is None:
            _start()
        _ring()
    return deadline


def cancel(deadline: Deadline) -> None:
    """Stop ``deadline`` and every deadline armed after it on its thread (their blocks are over)."""
    deadline.cancelled = True
    if deadline.forcer is not None:  # its stop was raised at every line (forcing.py): no longer
        deadline.forcer.end()
    stack = stacks.get(deadline.ident)
    if stack:
        if stack[-1] is deadline:
            stack.pop()
        elif deadline in stack:
            # Inner blocks that never cancelled (a RecursionError in their exit, say) end with it;
            # blocks of other asyncio tasks interleave on the same thread and go on.
            # So do generators suspended inside their own block: theirs holds when they resume.
            at = stack.index(deadline)
            keep = [inner for inner in stack[at + 1:] if inner.task is not deadline.task or _waits(inner.owner)]
            for inner in stack[at:]:
                if inner not in keep:
                    inner.cancelled, inner.owner = True, None
            stack[at:] = keep
        if not stack:
            stacks.pop(deadline.ident, None)
    # Do not keep the block's frame (and its locals) or its task alive until the due time.
    deadline.owner = deadline.task = deadline.loop = None
    if _pending and _pending[-1] is deadline:  # usual with-blocks: the watchdog never needs to see it
        try:
            popped = _pending.pop()
        except IndexError:  # the watchdog drained it meanwhile: it drops cancelled deadlines itself
            return
        if popped is not deadline:  # drained, and another thread armed one since: that one stays
            _pending.append(popped)


def _waits(owner: FrameType | None) -> bool:
    # A generator's or coroutine's frame that is not running: it is suspended (or it ended without
    # cancelling, which the watchdog then sees as suspended: one look a second).
    return owner is not None and owner.f_back is None and bool(owner.f_code.co_flags & SUSPENDABLE)


def retry(deadline: Deadline, verdict: str) -> None:
    """From a signal handler: the stop could not be raised where the code was; say why."""
    _retry.append((deadline, verdict))
    _ring()


def ring() -> None:
    """Wake the watchdog to look again now (safe in a signal handler: it never blocks)."""
    _ring()


def _ring() -> None:
    try:
        _bell.release()
    except RuntimeError:  # already rung: one ring wakes the watchdog once, enough for all
        pass


_starting = threading.Lock()


def _start() -> None:
    global _thread
    with _starting:  # two threads arming their first limits at once start one watchdog
        if _thread is None:
            thread = threading.Thread(target=_loop, name="nbtimeout-watchdog", daemon=True)
            thread.start()
            _thread = thread


PR_SET_TIMERSLACK = 29


def _loop() -> None:
    from .._process.facilities import PRCTL

    if PRCTL is not None:  # Linux: wake at the due time, not up to 50 µs after (the default slack)
        PRCTL(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    heap: list[tuple[float, int, Deadline]] = []
    order = itertools.count()
    while True:
        try:
            heap = _turn(heap, order)
        except Exception:  # the watchdog must outlive any one bug: every limit rests on it
            import traceback

            errors.append(traceback.format_exc())  # for bug reports and tests


def _turn(heap: list[tuple[float, int, Deadline]], order: itertools.count) -> list[tuple[float, int, Deadline]]:
    """One look at the deadlines, then sleep until the soonest is due or the bell rings."""
    global _wake_at
    _wake_at = -math.inf  # from here on an arm needs no wake-up token: we look at _pending below
    while True:
        try:  # not `while _pending`: a cancel may pop the last one between the test and the pop
            deadline = _pending.popleft()
        except IndexError:
            break
        if not deadline.cancelled:
            if deadline.engine is kernel_timed and kernel_timed.timed():
                # The kernel's timer stops it on time; we only look back later (refire, retry),
                # rather than wake with it and compete for the GIL the stopped thread needs.
                deadline.due = deadline.expires + REFIRE
            heapq.heappush(heap, (deadline.due, next(order), deadline))
    now = time.monotonic()
    while _retry:  # only this thread pops _retry
        deadline, verdict = _retry.popleft()
        if not deadline.cancelled and _reschedule(deadline, verdict, now):
            heapq.heappush(heap, (deadline.due, next(order), deadline))
    while heap and (heap[0][2].cancelled or heap[0][0] <= now):
        due, _, deadline = heapq.heappop(heap)
        if deadline.cancelled or due != deadline.due:  # cancelled, or a stale entry of a retry
            continue
        if _act(deadline, now):
            heapq.heappush(heap, (deadline.due, next(order), deadline))
    if len(heap) > 1024:  # many long limits armed and cancelled while the watchdog slept
        heap = [entry for entry in heap if not entry[2].cancelled]
        heapq.heapify(heap)
    soonest = heap[0][0] if heap else math.inf
    if kernel_timed is not None:  # the kernel's timer sends the main thread's next stop
        kernel_timed.ahead()
    _wake_at = soonest
    if not _pending and not _retry:
        _bell.acquire(timeout=min(max(soonest - time.monotonic(), 0.0), threading.TIMEOUT_MAX)
                      if soonest < math.inf else -1)
    return heap


def _act(deadline: Deadline, now: float) -> bool:
    """The deadline is due: deliver its stop, or wait out the grace; True if it stays watched."""
    if deadline.raised_at and now < deadline.raised_at + deadline.grace:
        deadline.due = deadline.raised_at + deadline.grace  # cleanup time after the first stop
        return True
    deadline.fired = True
    try:
        verdict = deadline.engine.deliver(deadline)
    except Exception:  # the watchdog must outlive any one delivery (say, EAGAIN from a full queue)
        verdict = HOLD
    return _reschedule(deadline, verdict, now)


def _reschedule(deadline: Deadline, verdict: str, now: float) -> bool:
    if verdict == STOPPED:
        deadline.due = now + (max(deadline.grace, REFIRE) if not deadline.raised_at else REFIRE)
        if not deadline.raised_at:
            deadline.raised_at = now
    elif verdict == SENT:
        deadline.due = now + REFIRE  # look again: the grace counts from when the handler raised
    elif verdict == BUSY:
        deadline.due = now + RETRY
    elif verdict == HOLD:
        deadline.due = now + REFIRE
    elif verdict == AWAY and (task := deadline.task) is not None and not task.done():
        # (Locals: the block's own thread may cancel the deadline, and clear these, meanwhile.)
        loop = deadline.loop
        if loop is not None and not deadline.task_cancelled:  # it waits in the event loop: cancel there
            loop.call_soon_threadsafe(_cancel_task, deadline, task)
        deadline.due = now + REFIRE
    elif verdict == AWAY and (owner := deadline.owner) is not None and owner.f_code.co_flags & SUSPENDABLE:
        # A generator that holds the limit is suspended: stop it if it runs when we look. Less often
        # as it stays suspended (an abandoned one may never run again), never less than once a second.
        deadline.due = now + min(max(REFIRE, (now - deadline.expires) / 10), 1.0)
    else:  # the block ended without cancelling (or its thread did): nothing is left to stop
        # Only flags: the stack belongs to its thread, which drops cancelled entries when it arms.
        deadline.cancelled, deadline.owner = True, None
        return False
    return True




def _cancel_task(deadline: Deadline, task: Any) -> None:
    """In the event loop's thread: cancel the task whose coroutine holds ``deadline``."""
    if not deadline.cancelled and not task.done():
        deadline.task_cancelled = True
        deadline.raised_at = deadline.raised_at or time.monotonic()
        task.cancel()


def _forget_all() -> None:
    """In a forked child: deadlines belong to the parent's blocks, and the watchdog did not fork."""
    global _thread, _bell, _wake_at, _starting
    for stack in stacks.values():
        for deadline in stack:
            deadline.cancelled = True
    stacks.clear()
    _pending.clear()
    _retry.clear()
    _bell, _wake_at, _thread, _starting = threading.Lock(), math.inf, None, threading.Lock()
    _bell.acquire()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)


def armed(ident: int | None = None) -> list[Deadline]:
    """The deadlines armed on thread ``ident`` (default: this one), outermost first."""
    return list(stacks.get(threading.get_ident() if ident is None else ident, ()))


def running(ident: int) -> FrameType | None:
    """The innermost Python frame thread ``ident`` runs, or None if it is gone."""
    return sys._current_frames().get(ident)
