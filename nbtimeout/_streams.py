"""``sys.stdout`` and ``sys.stderr`` as nbtimeout writes to them on the user's behalf.

A program may set them to None (GUI and daemon code does) or close them. Output nbtimeout relays
there (a fork child's text, a map task's lines, progress) is then dropped, as ``print()`` drops
it for None, instead of breaking the cell with an ``AttributeError`` or ``ValueError``.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def usable(stream: Any) -> bool:
    """Whether ``stream`` can take text: not None and not closed."""
    if stream is None:
        return False
    try:
        return not stream.closed
    except Exception:  # a stand-in without .closed (any object with write() works for print)
        return hasattr(stream, "write")


def write(name: str, text: str) -> None:
    """Write to ``sys.<name>`` if it can take text; else drop it."""
    stream = getattr(sys, name, None)
    if usable(stream):
        with contextlib.suppress(ValueError, OSError):  # closed between the check and the write
            stream.write(text)


def flush(*names: str) -> None:
    """Flush ``sys.<name>`` for each name that can be flushed."""
    for name in names:
        stream = getattr(sys, name, None)
        if usable(stream) and hasattr(stream, "flush"):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()


def can_display() -> bool:
    """Whether the kernel can show a display now: ipykernel flushes both streams first, and fails
    (``AttributeError``) where the program set one to None."""
    return all(hasattr(getattr(sys, name, None), "flush") for name in ("stdout", "stderr"))
