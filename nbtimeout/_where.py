"""Say in one line where timed code was: the innermost frame that belongs to a notebook cell."""

from __future__ import annotations

import os
import sys
from types import TracebackType

# nbtimeout's own frames are those under this folder (every subpackage included).
PACKAGE_DIR = _HERE = os.path.dirname(os.path.abspath(__file__))
_ASYNCIO = os.path.join(os.path.dirname(os.__file__), "asyncio") + os.sep


def cell_number(filename: str) -> int | None:
    """The execution count IPython recorded for a cell's code name, or None."""
    if "IPython" not in sys.modules:  # a plain script: no cells, and no IPython import on this path
        return None
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    return None if shell is None else shell.compile._filename_map.get(filename)


def current_cell(shell: object) -> int:
    """The number of the cell now running: IPython has already counted it when the body runs."""
    return shell.displayhook.prompt_count


Frames = list[tuple[str, int, str]]  # (filename, lineno, function), outermost first


def frames_of(tb: TracebackType | None) -> Frames:
    """The frames of ``tb``, read without touching source files (this runs on the abort path)."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return frames


def describe_where(frames: Frames) -> str | None:
    """``"line 3 in slow() of In [5]"`` for the innermost cell frame; else the innermost other one."""
    ours = [f for f in frames if not f[0].startswith(_HERE)]
    if not ours:
        return None
    for filename, lineno, name in (f[:3] for f in reversed(ours)):
        number = cell_number(filename)
        if number is not None:
            func = "" if name == "<module>" else f" in {name}()"
            return f"line {lineno}{func} of In [{number}]"
    # Outside a notebook: a coroutine stopped while it waited is "in fetch()", not "in sleep() of
    # tasks.py": the event loop's frames are not where the user's code was.
    users = [f for f in ours if not f[0].startswith(_ASYNCIO)] or ours
    filename, lineno, name = users[-1][:3]
    return f"line {lineno} in {name}() of {os.path.basename(filename)}"


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
