"""``nbtimeout run``'s terminal output: the running cell and its limit while it runs, a summary after.

On a terminal one line is redrawn in place five times a second (cell i/n, elapsed of the limit, a bar);
elsewhere (CI logs) each cell gets a plain line when it starts and when it ends.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .._units import format_duration, parse_duration

BAR = 20
TICK = 0.2


class Progress:
    def __init__(self, nb: Any, stream: Any) -> None:
        self.nb, self.stream = nb, stream
        self.code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.ends: dict[int, tuple[str, float]] = {}
        self._running: tuple[int, float | None, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.tty:
            threading.Thread(target=self._redraw, name="nbtimeout-run-progress", daemon=True).start()

    def _label(self, index: int) -> str:
        return f"cell {index} ({self.code.index(index) + 1}/{len(self.code)})"

    def started(self, index: int, spec: dict[str, Any] | None) -> None:
        limit = parse_duration(spec["timeout"]) if spec else None
        with self._lock:
            self._running = (index, limit, time.monotonic())
        if not self.tty:
            self._line(f"{self._label(index)} started"
                       + (f", limit {format_duration(limit)}" if limit else ", no limit"))

    def ended(self, index: int, status: str, elapsed: float) -> None:
        with self._lock:
            self._running = None
            self.ends[index] = (status, elapsed)
            if self.tty:
                self.stream.write("\r\x1b[K")
        if self.tty and status == "finished":
            return  # the live line says enough; only what went wrong stays on screen
        self._line(f"{self._label(index)} {status} after {format_duration(elapsed)}")

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _redraw(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                if self._running is None:
                    continue
                index, limit, started = self._running
                elapsed = time.monotonic() - started
                if limit:
                    filled = min(BAR, int(BAR * elapsed / limit))
                    bar = "#" * filled + "." * (BAR - filled)
                    shown = f"{format_duration(elapsed)} of {format_duration(limit)} [{bar}]"
                else:
                    shown = f"{format_duration(elapsed)} (no limit)"
                self.stream.write(f"\r\x1b[K{self._label(index)}: {shown}")
                self.stream.flush()

    def summary(self, output: Path, unrun: list[int], problem: str | None) -> int:
        """Print what came of the run; the exit status (0 all finished or continued, 1 otherwise)."""
        self._stop.set()
        tally: dict[str, list[int]] = {}
        for index, (status, _) in sorted(self.ends.items()):
            tally.setdefault(status, []).append(index)
        if unrun:
            tally["not run"] = unrun
        parts = []
        for status in ("finished", "stopped", "crashed", "failed", "not run"):
            cells = tally.get(status, [])
            if cells:
                named = "" if status == "finished" else f" ({', '.join(f'cell {i}' for i in cells)})"
                parts.append(f"{len(cells)} {status}{named}")
        self._line(f"nbtimeout run: {len(self.code)} code cells: {', '.join(parts) or 'none ran'}; wrote {output}")
        if problem:
            self._line(f"nbtimeout run: {problem}")
        errors = any(o.get("output_type") == "error" for c in self.nb.cells for o in c.get("outputs", []))
        return 1 if errors or problem or unrun else 0
