"""Say in one line where timed code was: the innermost frame that belongs to a notebook cell."""

from __future__ import annotations

import os
import traceback
from types import TracebackType

_HERE = os.path.dirname(os.path.abspath(__file__))


def cell_number(filename: str) -> int | None:
    """The execution count IPython recorded for a cell's code name, or None."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    return None if shell is None else shell.compile._filename_map.get(filename)


def current_cell(shell: object) -> int:
    """The number of the cell now running: IPython has already counted it when the body runs."""
    return shell.displayhook.prompt_count


def describe_where(frames: traceback.StackSummary | list[traceback.FrameSummary]) -> str | None:
    """``"line 3 in slow()"`` for the innermost cell frame; else the innermost non-nbtimeout frame."""
    ours = [f for f in frames if not f.filename.startswith(_HERE)]
    if not ours:
        return None
    for frame in reversed(ours):
        number = cell_number(frame.filename)
        if number is not None:
            func = "" if frame.name == "<module>" else f" in {frame.name}()"
            return f"line {frame.lineno}{func} of In [{number}]"
    frame = ours[-1]
    return f"line {frame.lineno} in {frame.name}() of {os.path.basename(frame.filename)}"


def trim_tail(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its trailing nbtimeout frames (the alarm handler that raised)."""
    last_outside, entry = None, tb
    while entry is not None:
        if not entry.tb_frame.f_code.co_filename.startswith(_HERE):
            last_outside = entry
        entry = entry.tb_next
    if last_outside is not None:
        last_outside.tb_next = None
    return tb
