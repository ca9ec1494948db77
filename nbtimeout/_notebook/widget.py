"""The live countdown of a timed cell: a stock-ipywidgets bar and label, and its final state.

A background thread moves the bar several times a second (comm messages can leave the kernel
while the cell runs, though none can come in). The thread is joined before the cell returns. The
widget is created in the kernel, before any engine runs, so a forked child never makes one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from typing import Any

from .._errors import CellCrashedError, CellTimeoutError
from .._units import format_duration
from .banner import LOOKS

TICK = 0.2  # seconds between updates: smooth enough to read, a handful of messages a second
_BAR_STYLE = {"finished": "success", "stopped": "danger", "continued": "warning", "crashed": "danger",
              "failed": "warning", "interrupted": "warning"}
RUNNING = "◷"  # a clock face in DejaVu: renders without an emoji font
_QUIET = contextlib.nullcontext()  # shared: a quiet cell allocates nothing

# The ticker holds this lock while it talks to the kernel; fork() takes it first, so a child never
# inherits a lock the ticker held halfway through sending (only the forking thread is copied).
_SENDING = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_SENDING.acquire, after_in_parent=_SENDING.release,
                        after_in_child=_SENDING.release)


def countdown(options: Any, shell: Any) -> contextlib.AbstractContextManager[Any]:
    """A context manager showing the countdown around a timed run, or a no-op.

    No-op when quiet, and when there is no kernel to carry widget messages (plain IPython in a
    terminal) or ipywidgets cannot be imported: the banner still tells how a cell ended.
    """
    if options.quiet or getattr(shell, "kernel", None) is None:
        return _QUIET
    try:
        return Countdown(options.limit, options.mode, keep_going=options.keep_going)
    except ImportError:
        return _QUIET


def elapsed_text(elapsed: float, limit: float) -> str:
    """Elapsed time in the unit the limit reads best in: ``1.2 s``, ``150 ms``."""
    if limit < 1:
        return f"{elapsed * 1000:.0f} ms"
    return f"{elapsed:.1f} s" if elapsed < 60 else format_duration(elapsed)


def outcome(error: BaseException | None, keep_going: bool = False) -> tuple[str, str]:
    """``(state, detail)`` for how a run ended; ``detail`` names the exception or signal."""
    if error is None:
        return "finished", ""
    if isinstance(error, CellTimeoutError):
        return ("continued" if keep_going else "stopped"), ""
    if isinstance(error, CellCrashedError):
        return "crashed", f" ({error.signal or f'exit code {error.exitcode}'})"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", ""
    return "failed", f" ({type(error).__name__})"


class Countdown:
    """Bar + label shown for one timed run; use as a context manager around the engine."""

    def __init__(self, limit: float, engine: str, keep_going: bool = False) -> None:
        import ipywidgets as w  # imported only when a countdown is shown: -q cells skip it

        self.limit, self.engine, self.keep_going = limit, engine, keep_going
        self.tail = f"{format_duration(limit)} · {engine}"
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=limit, layout=w.Layout(width="160px"))
        self.label = w.Label(value=f"{RUNNING} {elapsed_text(0, limit)} / {self.tail}")
        self.box = _box_class()([self.bar, self.label], layout=w.Layout(align_items="center"))
        self.box.plain = f"%%timeout {self.tail}: running"
        self.state: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="nbtimeout-countdown", daemon=True)
        self._handle: Any = None
        self._started = 0.0

    def __enter__(self) -> Countdown:
        from IPython.display import display

        self._handle = display(self.box, display_id=True)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        elapsed = time.monotonic() - self._started
        self._stop.set()
        self._thread.join()
        try:
            self.finish(error, getattr(error, "elapsed", elapsed))
        except Exception:  # a broken widget must never replace the cell's own outcome
            pass

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            elapsed = time.monotonic() - self._started
            with _SENDING:
                if self._stop.is_set():
                    return  # the cell ended while we waited: finish() owns the widget now
                self.bar.value = min(elapsed, self.limit)
                self.label.value = f"{RUNNING} {elapsed_text(elapsed, self.limit)} / {self.tail}"

    def finish(self, error: BaseException | None, elapsed: float) -> None:
        """Put the widget in its final state and make that its saved ``text/plain``."""
        self.state, detail = outcome(error, self.keep_going)
        icon, title, _ = LOOKS[self.state]
        verb = "in" if self.state == "finished" else "after"
        text = f"{icon} {title}{detail} {verb} {format_duration(elapsed)} / {self.tail}"
        self.bar.bar_style = _BAR_STYLE[self.state]
        self.bar.value = self.limit if self.state in ("stopped", "continued") else min(elapsed, self.limit)
        self.label.value = text
        self.box.plain = f"%%timeout {self.tail}: {text}"
        # Saved notebooks keep only text/plain: re-sending the display makes it the final text.
        self._handle.update(self.box)


@functools.cache
def _box_class() -> type:
    """Made on first use, so importing this module does not import ipywidgets."""
    from ipywidgets import HBox

    class CountdownBox(HBox):
        """An HBox whose ``text/plain`` is the countdown's state, not the widget's repr."""

        plain = ""

        def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
            data = super()._repr_mimebundle_(**kwargs)
            data["text/plain"] = self.plain
            return data

    return CountdownBox
