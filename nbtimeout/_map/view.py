"""What ``nbtimeout.map`` shows while it runs: task output prefixed ``[index]``, and progress.

In a notebook, a stock ipywidgets ``HTML`` (inline ``style=`` only, which JupyterLab keeps), redrawn by
a background thread at most five times a second: one square per task up to ``GRID_MAX`` tasks, above
that a summary whose size does not grow with the count (a strip of task states by index, the counts,
the stopped and crashed tasks by index). At the end the display becomes a static HTML + text twin of
the final state, like the countdown's records, so nbconvert's HTML, nbviewer and GitHub show it
offline and a saved notebook keeps it. In a terminal, one progress line on stderr; else nothing.
"""

from __future__ import annotations

import codecs
import sys
import threading
import time
from typing import Any

from .. import _streams
from .._palette import COLOURS
from .._units import format_duration

SHOWN = ("running", "finished", "stopped", "crashed", "failed")
GRID_MAX = 400  # tasks shown one square each; above, the summary (a grid that big is unreadable)
STRIP_BINS = 100  # segments of the summary's strip
LISTED = 20  # stopped or crashed tasks named by index in the summary
MIN_INTERVAL = 0.2  # at most five redraws a second
_WORST_FIRST = ("crashed", "failed", "stopped", "running", "finished", "pending")


class View:
    """Progress that shows nothing; the base of the others. Task output goes to sys.stdout/err."""

    def __init__(self, total: int, limit: float, workers: int | str) -> None:
        self.states = ["pending"] * total
        self.limit, self.workers = limit, workers
        self.started = time.monotonic()
        self.interrupted = False
        self._partial: dict[tuple[int | None, str], str] = {}
        self._decoders: dict[tuple[int, str], Any] = {}
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    # --- progress -----------------------------------------------------------------------------
    def running(self, index: int) -> None:
        self.states[index] = "running"
        self._changed.set()

    def ended(self, index: int, status: str) -> None:
        self.flush(index)
        self.states[index] = status
        self._changed.set()

    def counts(self) -> dict[str, int]:
        tally = dict.fromkeys(SHOWN, 0)
        for state in self.states:
            if state != "pending":
                tally[state] += 1
        return tally

    def summary(self) -> str:
        done = sum(s not in ("pending", "running") for s in self.states)
        parts = [f"{n} {state}" for state, n in self.counts().items() if n and state != "running"]
        head = "interrupted after" if self.interrupted else "done in"
        if not self.interrupted and done < len(self.states):
            head = "running for"
        elapsed = format_duration(time.monotonic() - self.started)
        where = f"{self.workers} workers" if isinstance(self.workers, int) else self.workers  # or "a Client"
        return (f"nbtimeout.map: {done}/{len(self.states)} tasks {head} {elapsed} on {where}, "
                f"{format_duration(self.limit)} limit each: {', '.join(parts) or 'none done'}")

    def draw(self, final: bool) -> None:
        """Show the current state; called from the drawing thread, and once at the end."""

    def start(self, interval: float) -> None:
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="nbtimeout-map",
                                        daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            if self._changed.is_set() or self.states.count("running"):  # the clock moves
                self._changed.clear()
                self.draw(final=False)

    def __enter__(self) -> View:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.interrupted = kind is not None
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        for index, _name in list(self._partial):
            self.flush(index)
        self.draw(final=True)

    # --- task output --------------------------------------------------------------------------
    def write(self, index: int | None, name: str, text: str) -> None:
        """Text a task wrote: whole lines go out prefixed ``[index] ``; the rest waits for more."""
        text = self._partial.pop((index, name), "") + text
        *lines, rest = text.split("\n")
        if rest:
            self._partial[index, name] = rest
        if lines:
            label = "?" if index is None else index
            self.emit(name, "".join(f"[{label}] {line}\n" for line in lines))

    def raw(self, pid: int, index: int | None, name: str, data: bytes) -> None:
        """Bytes a worker wrote to its fd 1 or 2 (C code, subprocesses)."""
        decoder = self._decoders.setdefault((pid, name), codecs.getincrementaldecoder("utf-8")("replace"))
        self.write(index, name, decoder.decode(data))

    def flush(self, index: int | None) -> None:
        """A task ended: its unfinished lines go out too."""
        for name in ("stdout", "stderr"):
            rest = self._partial.pop((index, name), "")
            if rest:
                self.write(index, name, rest + "\n")

    def emit(self, name: str, text: str) -> None:
        _streams.write(name, text)  # dropped where the program set the stream to None or closed it
        _streams.flush(name)

    def message(self, kind: str, *fields: Any) -> None:
        """A task's ``display()``; its ``clear_output()`` is dropped, it would clear every task's."""
        from .._fork.capture import Replay
        from .._fork.protocol import DISPLAY

        if kind == DISPLAY:
            Replay(shell()).message(kind, *fields)


class LineView(View):
    """One line on a terminal's stderr, rewritten in place; task output is printed above it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._lock = threading.Lock()

    def draw(self, final: bool) -> None:
        with self._lock:
            _streams.write("stderr", "\r\x1b[K" + self.summary() + ("\n" if final else ""))
            _streams.flush("stderr")

    def emit(self, name: str, text: str) -> None:
        with self._lock:
            _streams.write("stderr", "\r\x1b[K")
            super().emit(name, text)


class WidgetView(View):
    """A stock ``ipywidgets.HTML`` while the map runs; a static HTML + text twin once it has ended."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        import ipywidgets
        from IPython.display import display

        self.widget = ipywidgets.HTML(self.html())
        self.handle = display(self.bundle(), raw=True, display_id=True)

    def bundle(self) -> dict[str, Any]:
        data = self.widget._repr_mimebundle_()  # the widget view, with twins where no widget renders
        data.update({"text/html": self.html(), "text/plain": self.summary()})
        return data

    def draw(self, final: bool) -> None:
        if not final:
            self.widget.value = self.html()
            return
        if self.handle is not None:  # the final state needs no kernel and no widget renderer
            self.handle.update({"text/html": self.html(), "text/plain": self.summary()}, raw=True)
        self.widget.close()

    def html(self) -> str:
        body = self._grid() if len(self.states) <= GRID_MAX else self._strip()
        legend = " &nbsp; ".join(f'<span style="{_square(10)}{COLOURS[s]}"></span> {n} {s}'
                                 for s, n in self.counts().items())
        return (f'<div data-nbtimeout-map="{len(self.states)}" style="font-family:monospace;font-size:12px">'
                f'{body}<div style="margin-top:4px">{legend}</div><div>{self.summary()}</div></div>')

    def _grid(self) -> str:
        cells = "".join(f'<span title="[{i}] {s}" style="{_square(10)}{COLOURS[s]}"></span>'
                        for i, s in enumerate(self.states))
        return f'<div style="line-height:0">{cells}</div>'

    def _strip(self) -> str:
        """Task states by index in ``STRIP_BINS`` segments, each the colour of its worst task."""
        total, stops = len(self.states), []
        for b in range(STRIP_BINS):
            part = set(self.states[b * total // STRIP_BINS:(b + 1) * total // STRIP_BINS])
            colour = COLOURS[next(s for s in _WORST_FIRST if s in part)] if part else COLOURS["pending"]
            stops.append(f"{colour} {b}% {b + 1}%")
        strip = (f'<div title="tasks 0 to {total - 1}, left to right" style="height:12px;max-width:600px;'
                 f'background:linear-gradient(to right,{",".join(stops)})"></div>')
        named = []
        for state in ("stopped", "crashed", "failed"):
            found = [i for i, s in enumerate(self.states) if s == state]
            if found:
                more = f" and {len(found) - LISTED} more" if len(found) > LISTED else ""
                named.append(f"{state}: {', '.join(map(str, found[:LISTED]))}{more}")
        return strip + "".join(f"<div>{line}</div>" for line in named)


def _square(size: int) -> str:
    return f"display:inline-block;width:{size}px;height:{size}px;margin:1px;border-radius:2px;background:"


def shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def open_view(total: int, limit: float, workers: int | str) -> View:
    """The widget in a kernel, a progress line on a terminal, nothing otherwise; started."""
    if getattr(shell(), "kernel", None) is not None and _streams.can_display():
        try:
            view: View = WidgetView(total, limit, workers)
        except ImportError:  # no ipywidgets: the output and the results still work
            view = View(total, limit, workers)
        else:
            view.start(MIN_INTERVAL)
        return view
    if _streams.usable(sys.stderr) and sys.stderr.isatty():
        view = LineView(total, limit, workers)
        view.start(MIN_INTERVAL)
        return view
    return View(total, limit, workers)
