"""The countdown of a timed cell, shown only once the cell has run a while, and the record it leaves.

Plain displays, not widgets: a background thread shows a one-line countdown once the cell has run
``after`` seconds and updates it in place (``update_display_data``) a few times a second; when the
cell ends, that same display becomes the cell's record (banner.py), or empty. No widget or comm is
ever opened, so nothing stays alive in the kernel, nbclient saves no widget state, and the record
reads the same in JupyterLab, Notebook 7, nbconvert HTML (offline), nbviewer and GitHub.
A cell that ends sooner than ``after`` sends nothing at all unless it leaves a record.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
import time
import uuid
from typing import Any

from .._errors import NOT_CARRIED, not_carried
from .._units import MAX_WAIT, format_duration
from . import banner as _banner

TICK = 0.2  # seconds between updates: smooth enough to read, a handful of messages a second
THREAD = "nbtimeout-countdown"
RUNNING = _banner.LOOKS["running"][0]

# The ticker holds this lock while it talks to the kernel; fork() takes it first, so a child never
# inherits a lock the ticker held halfway through sending (only the forking thread is copied).
_SENDING = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_SENDING.acquire, after_in_parent=_SENDING.release,
                        after_in_child=_SENDING.release)
_ids = itertools.count()
_PREFIX = uuid.uuid4().hex[:12]
# What the HTML of the line that was the countdown says (nbval masks it): the same at every run, so a
# saved notebook does not change when it is run again; the display id, never saved, is unique.
MARK = "countdown"
EMPTIED = {"text/plain": "", "text/html": f'<div {_banner.SLOT}="{MARK}"></div>'}


def _nowhere(*args: Any, **kwargs: Any) -> None:
    """Where the lines go in a shell without a display publisher."""


def elapsed_text(elapsed: float) -> str:
    """Elapsed time on its own scale (not the limit's): ``150 ms``, ``1.2 s``, ``2 min 5 s``."""
    if elapsed < 1:
        return f"{elapsed * 1000:.0f} ms"
    return f"{elapsed:.1f} s" if elapsed < 60 else format_duration(elapsed)


class Countdown:
    """Around one timed run (a context manager): the live line when it helps, the record after.

    ``show_finished``: whether a run that finished leaves a record. ``live``: whether a countdown
    may appear at all (not with ``-q``, and not without a kernel to carry display updates).
    """

    def __init__(self, options: Any, shell: Any, after: float, show_finished: bool) -> None:
        self.options, self.after, self.show_finished = options, after, show_finished
        self.live = not options.quiet and getattr(shell, "kernel", None) is not None
        # Captured now: a %%capture inside the cell must not swallow the countdown or the record.
        self._pub = getattr(shell, "display_pub", None)
        self._publish = getattr(self._pub, "publish", _nowhere)  # a shell that cannot display shows nothing
        # countdown_after = inf (or longer than any wait): never a countdown
        self.live = self.live and self._pub is not None and after <= MAX_WAIT
        self._session = getattr(shell.kernel, "session", None) if self.live else None
        self._counted: int | None = None  # the kernel's message count after our last line was sent
        self._moved = False  # something was sent after our line appeared: it is not the last output
        self._cleared = False  # the cell called clear_output: the shown line is gone from the page
        budget = f", what is left of the {format_duration(options.budget)} budget" if options.budget else ""
        self.tail = f"of {format_duration(options.limit)} ({options.mode} engine{budget})"
        self.slot: str | None = None  # display id, once the live line is shown
        self.sent = 0  # display messages sent (the first display and its updates)
        self._stop: threading.Event | None = None
        self._outer_clear: Any = None
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def __enter__(self) -> Countdown:
        self._started = time.monotonic()
        self._carried = not_carried.set(False)
        if self.live:
            self._watch_clear_output()
            self._stop = threading.Event()
            # Run in a copy of this context: ipykernel keeps the cell's parent header in a
            # ContextVar, so the countdown's messages belong to this cell (and subshell).
            self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                            name=THREAD, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        elapsed = time.monotonic() - self._started
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._pub.__dict__.pop("clear_output", None)  # back to the publisher's own (or the outer cell's)
            if self._outer_clear is not None:
                self._pub.clear_output = self._outer_clear
        try:
            self._record(error, elapsed)
        except Exception:  # showing the record must never replace the cell's own outcome
            pass
        finally:
            try:
                not_carried.reset(self._carried)
            except ValueError:  # left in another context (an awaited cell's task): nothing to undo here
                pass

    # --- the live line, on the countdown thread -------------------------------------------------

    def _run(self) -> None:
        due, deferred = self._started + self.after, False
        while True:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            late = time.monotonic() - due
            if late <= TICK or deferred:
                break
            # Woken late: C code held the GIL. The cell may be ending right now; give it a tick to
            # say so rather than flash a countdown in its last moment.
            due, deferred = time.monotonic() + TICK, True
        if not self._send(first=True):
            return
        while not self._stop.wait(TICK):
            if not self._send(first=False):
                return

    def _send(self, first: bool) -> bool:
        elapsed = time.monotonic() - self._started
        limit = self.options.limit
        with _SENDING:
            if self._stop.is_set():
                return False  # the cell ended while we waited: the record owns the line now
            if first:
                # the pid too: a timed cell nested in a fork cell counts on from the kernel's copy
                self.slot = f"nbtimeout-{_PREFIX}-{os.getpid()}-{next(_ids)}"
            data = _banner.line("running", f"{elapsed_text(elapsed)} {self.tail}", slot=MARK,
                                fill=min(elapsed / limit, 1.0))
            self._show(data, update=not first)
        return True

    def _show(self, data: dict[str, str], update: bool) -> None:
        if update and self._cleared:
            update = False  # the cell cleared its output, the line with it: show it anew, same id
        self._cleared = False
        transient = {"display_id": self.slot} if self.slot else {}
        before = self._count()
        self._publish(data=data, metadata={}, transient=transient, update=update)
        self.sent += 1
        after = self._count()
        # The kernel sent something else since our line appeared (publish flushes the streams first):
        # the line is no longer the cell's last output.
        if update and (before is None or before != self._counted or after != before + 1):
            self._moved = True
        self._counted = after

    def _count(self) -> int | None:
        """How many messages the kernel has sent (each takes a number from its session), or None."""
        count = getattr(self._session, "message_count", None)
        return count if isinstance(count, int) else None

    def _last_out(self) -> bool:
        """Whether the line we showed is still the cell's last output: the kernel sent no other
        message since it appeared (a print, a display); without a count to tell, it is not."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # what the cell printed is sent now, so it is counted
        count = self._count()
        return not self._moved and count is not None and count == self._counted

    def _watch_clear_output(self) -> None:
        """Note when the cell clears its output (``clear_output()``, also replayed from a fork child)."""
        self._outer_clear = self._pub.__dict__.get("clear_output")  # a timed cell nested in a timed cell
        clear = self._pub.clear_output

        def clear_output(*args: Any, **kwargs: Any) -> Any:
            with _SENDING:  # not between the countdown thread's look at the flag and its message
                self._cleared = True
                return clear(*args, **kwargs)

        self._pub.clear_output = clear_output

    # --- the record, on the cell's thread -------------------------------------------------------

    def _record(self, error: BaseException | None, elapsed: float) -> None:
        options = self.options
        if error is None and self.slot is None and not self.show_finished and not _banner.late(
                elapsed, options.limit, options.mode):
            return  # the common quiet end: nothing to show, nothing to word
        state, text, where = _banner.ended(error, getattr(error, "elapsed", elapsed), options.limit,
                                           options.mode, options.keep_going, options.budget,
                                           getattr(options, "origin", "%%timeout"))
        if state == "finished":  # a limit that could not be kept is always said
            wanted = self.show_finished or _banner.late(elapsed, options.limit, options.mode)
            if not_carried.get():
                text += "; " + NOT_CARRIED
        elif state in ("failed", "interrupted"):
            wanted = self.slot is not None  # the traceback says it; only a shown countdown needs an end
        else:
            wanted = True  # stopped, crashed, budget spent: always said
        if self.slot is not None and (not wanted or not self._last_out()):
            # The countdown line is emptied in place (a finished every-cell run leaves nothing): a
            # record goes at the end, after what the cell printed since the line appeared.
            self._show(EMPTIED, update=True)
            self.slot = None
        if wanted:
            shown = self.slot is not None
            self._show(_banner.line(state, text, where, slot=MARK if shown else None), update=shown)


def countdown(options: Any, shell: Any, after: float = 1.0, show_finished: bool = True) -> Countdown:
    """The context manager that shows the countdown and the record of one timed run."""
    return Countdown(options, shell, after, show_finished)
