"""A stop that code keeps swallowing, or that landed where it is lost, is raised at every line.

Past the grace, a stop is raised again every REFIRE seconds; a retry loop with a bare ``except:``
swallows each one. So the signal handler also installs a trace function that raises the stop at
every line of the block's code (the handler's own body included, so it leaves the ``try``) until
the block ends. A stop raised in ``__del__``, a weakref callback or any other place whose errors
Python only reports ("Exception ignored in ...") is lost: it is not raised there, or, reported
through ``sys.unraisablehook``, it is raised again at the next line of the block's code.

CPython drops a trace function that raises, so each stop raised from it ends it: a profile function
(which stays) installs it again as the stop leaves a frame or a call is made, and so does the next
refire. The user's trace and profile functions are set back when the block ends.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from .._errors import _Expired
from .watchdog import STOPPED, Deadline

# Where an exception is only reported, never propagated: a stop must not be raised there.
UNRAISABLE = frozenset({"__del__"})


def in_unraisable(frame: FrameType | None, owner: FrameType | None) -> bool:
    """Whether a frame from ``frame`` down to ``owner`` is one whose exceptions Python swallows."""
    while frame is not None and frame is not owner:
        if frame.f_code.co_name in UNRAISABLE:
            return True
        frame = frame.f_back
    return False


class Forcer:
    """The trace function that raises ``deadline``'s stop at each line of its block's code."""

    __slots__ = ("classify", "deadline", "previous", "previous_profile", "profile")

    def __init__(self, deadline: Deadline, classify: Any) -> None:
        self.deadline, self.classify = deadline, classify
        self.previous, self.previous_profile = sys.gettrace(), sys.getprofile()  # set back by ``end``
        self.profile = self._again

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        deadline = self.deadline
        if deadline.cancelled:
            return None
        if event == "line" and not (frame is deadline.owner and frame.f_lineno == deadline.line) \
                and self.classify(frame, deadline, (self.previous, None)) == STOPPED \
                and not in_unraisable(frame, deadline.owner):
            # (Never at the with-statement's own line: the block's exit, which ends the limit, runs there.)
            raise _Expired(deadline)
        return self

    def _again(self, frame: FrameType, event: str, arg: Any) -> None:
        # The profile function: after a stop from the trace function left a frame (or a call is
        # made), trace again, so the handler that catches it raises it at its first line.
        if not self.deadline.cancelled and sys.gettrace() is not self:
            self.install(frame.f_back if event == "return" else frame)

    def install(self, frame: FrameType | None) -> None:
        """Trace this thread from now on, ``frame`` and those below it included (they run on)."""
        sys.settrace(self)
        if sys.getprofile() is not self.profile:
            sys.setprofile(self.profile)
        owner = self.deadline.owner
        while frame is not None:
            frame.f_trace = self
            if frame is owner:
                break
            frame = frame.f_back

    def end(self) -> None:
        """In the block's thread, as it ends: the trace function of before, and no frame of ours."""
        if sys.gettrace() is self or sys.gettrace() is None:
            sys.settrace(self.previous)
        if sys.getprofile() is self.profile:
            sys.setprofile(self.previous_profile)
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_trace is self:
                frame.f_trace = None
            frame = frame.f_back


def force(deadline: Deadline, frame: FrameType | None, classify: Any) -> None:
    """From now until ``deadline``'s block ends, raise its stop at every line of the block's code."""
    forcer = deadline.forcer
    if forcer is None:
        deadline.forcer = forcer = Forcer(deadline, classify)
    forcer.install(frame)


_classify: Any = None
_previous_hook: Any = None


def watch_unraisable(classify: Any) -> None:
    """Catch our stops that Python reports as unraisable (idempotent; chains the hook of before)."""
    global _classify, _previous_hook
    if sys.unraisablehook is _on_unraisable:
        return
    _classify, _previous_hook = classify, sys.unraisablehook
    sys.unraisablehook = _on_unraisable


def _on_unraisable(unraisable: Any) -> None:
    exc = unraisable.exc_value
    deadline = (exc.args[0] if exc.args else getattr(exc, "deadline", None)) if isinstance(exc, _Expired) else None
    if isinstance(deadline, Deadline) and not deadline.cancelled:
        # Lost where it landed: raise it at the next line of the block's code instead, unreported.
        force(deadline, sys._getframe(1), _classify)
        return
    (_previous_hook or sys.__unraisablehook__)(unraisable)
