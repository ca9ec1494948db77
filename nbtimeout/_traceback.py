"""Give an exception the child's stack as a real traceback, so IPython shows the cell lines.

Frames cannot be sent between processes, so each one is rebuilt by running a one-line ``raise``
compiled with the child's filename, line number and function name (Jinja2's technique); IPython
then reads the source from ``linecache``, which the child shares with the kernel.
"""

from __future__ import annotations

import re
from types import CodeType, TracebackType

from ._where import Frames

# faulthandler's dump: '  File "/x/y.py", line 12 in func' (most recent call first)
_DUMPED = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<name>.*)$')


class RemoteTraceback(Exception):  # noqa: N818 - named for what it holds, like pebble's
    """The child's formatted traceback, chained as ``__cause__`` of errors from forked calls."""

    def __str__(self) -> str:
        return "\n\n" + self.args[0]


def parse_dump(text: str) -> Frames:
    """Frames of the first stack in a faulthandler dump, outermost first."""
    first = text.split("Stack (most recent call first):")[:2][-1]  # grandchildren may dump too
    found = [(m["file"], int(m["line"]), m["name"]) for m in map(_DUMPED.match, first.splitlines()) if m]
    return found[::-1]


def _frame_code(filename: str, lineno: int, name: str) -> CodeType:
    code = compile("\n" * (lineno - 1) + "raise __nbtimeout_error__", filename, "exec")
    return code.replace(co_name=name)


def attach(error: BaseException, frames: Frames) -> BaseException:
    """``error`` with a traceback made of ``frames`` (outermost first); returns ``error``."""
    tb: TracebackType | None = None
    for filename, lineno, name in reversed(frames):
        if lineno <= 0:
            continue
        try:
            exec(_frame_code(filename, lineno, name), {"__nbtimeout_error__": error})
        except BaseException as raised:
            fake = raised.__traceback__.tb_next  # type: ignore[union-attr]
        tb = TracebackType(tb, fake.tb_frame, fake.tb_lasti, lineno)  # type: ignore[union-attr]
    error.__traceback__ = None
    return error.with_traceback(tb)


def format_frames(frames: Frames) -> str:
    """A traceback-style listing of ``frames`` with their source lines."""
    import linecache

    lines = []
    for filename, lineno, name in frames:
        lines.append(f'  File "{filename}", line {lineno}, in {name}')
        source = linecache.getline(filename, lineno).strip()
        if source:
            lines.append(f"    {source}")
    return "\n".join(lines)
