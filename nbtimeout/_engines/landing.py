"""The thread engine's stop, raised by the stopped thread itself where it lands (``sys.monitoring``).

``PyThreadState_SetAsyncExc`` raises at the thread's next check for pending work. Up to CPython
3.12 that is the check it was paused at, the place ``delivery.classify`` looked at; since 3.13 (one
eval-breaker per thread, read before the thread waits for the GIL) it is the check after that,
which can be in a trace function (CPython then drops it) or in nbtimeout's exit (the block is over:
the stop escapes it). Where ``sys.monitoring`` (PEP 669) has a free tool id, the watchdog instead
turns on events: a function starting, a C function returning, a new line. Their callback runs in
the due thread, classifies that frame as the signal engine's handler does and raises there, or
hands the verdict back to the watchdog. Events fire neither in trace functions nor in callbacks.
Not raised: at a JUMP event (CPython 3.13 unwinds that past the frame's own handlers), and at a
new line of the block's own frame (a with-statement's exit runs on a line of its own, before
``__exit__`` is called: raised there, the stop skips the exit). A loop of the block's frame that
calls nothing gives neither chance: at the next delivery the stop is set the old way.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import CodeType
from typing import Any

from .._errors import _Expired
from . import watchdog
from .watchdog import BUSY, GONE, SENT, STOPPED, Deadline

_monitoring: Any = getattr(sys, "monitoring", None)
_tool: int | None = None      # our tool id once claimed
_claimed = False              # whether we tried
_due: dict[int, Deadline] = {}  # thread ident -> its deadline whose stop awaits a line of its code
_classify: Any = None         # delivery.classify (which imports this module)
# CALL also turns on C_RETURN (which cannot be set alone); CALL's own callback does nothing.
_EVENTS = 0 if _monitoring is None else (_monitoring.events.PY_START | _monitoring.events.CALL
                                         | _monitoring.events.LINE)


def available() -> bool:
    """Whether stops can be raised this way here (claims a tool id the first time)."""
    global _tool, _claimed
    if not _claimed:
        _claimed = True
        if _monitoring is not None:
            # The ids PEP 669 names (debugger 0, coverage 1, profiler 2, optimizer 5) go last.
            for tool in (4, 3, 2, 1):
                if _monitoring.get_tool(tool) is None:
                    try:
                        _monitoring.use_tool_id(tool, "nbtimeout")
                    except ValueError:  # claimed meanwhile
                        continue
                    events = _monitoring.events
                    _monitoring.register_callback(tool, events.PY_START, _on_start)
                    _monitoring.register_callback(tool, events.LINE, _on_line)
                    _monitoring.register_callback(tool, events.CALL, _on_call)
                    _monitoring.register_callback(tool, events.C_RETURN, _on_c_return)
                    _tool = tool
                    break
    return _tool is not None and _monitoring.get_tool(_tool) == "nbtimeout"


def deliver(deadline: Deadline, classify: Any) -> str | None:
    """From the watchdog: have ``deadline``'s thread raise its stop at the next point ``classify``
    (delivery's: may the stop be raised here?) allows; None: it did not land since the last
    delivery, set it the old way."""
    global _classify
    if watchdog.running(deadline.ident) is None:
        return GONE
    if _due.get(deadline.ident) is deadline:
        del _due[deadline.ident]
        if not _due:
            _monitoring.set_events(_tool, 0)
        return None
    _classify = classify
    _due[deadline.ident] = deadline
    if _monitoring.get_events(_tool) != _EVENTS:
        _monitoring.set_events(_tool, _EVENTS)
    return SENT


def _on_start(code: CodeType, offset: int) -> None:
    _land()


def _on_line(code: CodeType, line: int) -> None:
    _land(lines=True)


def _on_call(code: CodeType, offset: int, callable: Any, arg0: Any) -> None:
    pass  # a call about to be made (the __exit__ of a with-block, say): never here


def _on_c_return(code: CodeType, offset: int, callable: Any, arg0: Any) -> None:
    _land()


def _land(lines: bool = False) -> None:
    deadline = _due.get(threading.get_ident())
    if deadline is None:
        return  # another thread's code
    frame = sys._getframe(2)  # the code the event is about
    if lines and frame is deadline.owner:
        return
    if deadline.cancelled:
        verdict = GONE
    else:
        verdict = _classify(frame, deadline, (sys.gettrace(), sys.getprofile()))
        if verdict == BUSY:
            return  # nbtimeout's bookkeeping: its next line decides (a cancel ends the wait)
    if _due.get(deadline.ident) is deadline:
        del _due[deadline.ident]
    if not _due:
        _monitoring.set_events(_tool, 0)
    if verdict == GONE:
        return
    if verdict != STOPPED:
        watchdog.retry(deadline, verdict)
        return
    if not deadline.raised_at:
        deadline.raised_at = time.monotonic()
    raise _Expired(deadline)


def _in_forked_child() -> None:
    # The child's deadlines are forgotten (watchdog._forget_all); so are their pending stops.
    _due.clear()
    if _tool is not None and _monitoring.get_tool(_tool) == "nbtimeout":
        _monitoring.set_events(_tool, 0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)
