"""A fork child's frames as they travel with its exception: places, and the frames' locals.

In the child, each traceback entry outside nbtimeout becomes (file, line, function, qualname,
first line, parameters) and a scope: the module's name, whether it is module level, and for the
innermost frames their locals (small plain values as themselves, anything else as its repr,
``ChildRepr``). In the kernel, ``scopes`` turns scopes into globals and locals for
``_traceback.attach``.
"""

from __future__ import annotations

import reprlib
import sys
from types import TracebackType
from typing import Any

from .._traceback import FrameLocals, signature_of
from .._where import PACKAGE_DIR

MAX_FRAMES = 5000  # per exception: a deep recursion keeps its outermost 50 and innermost frames
LOCALS_DEPTH = 20  # innermost frames of each exception whose locals travel
MAX_LOCALS = 200  # names per frame
PLAIN = (type(None), bool, int, float, complex, str, bytes)
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2000, 2000, 30, 30
NOT_DEEP = f"only the {LOCALS_DEPTH} innermost frames' variables are carried back from the fork child"
# (module name, module level?, locals or None, the frame's key, the line it stands at)
Scope = tuple[str | None, bool, dict[str, Any] | None, int, int]


class ChildRepr:
    """A local that stayed in the fork child: shows the repr it had there."""

    def __init__(self, value: Any) -> None:
        self.type_name = type(value).__qualname__
        try:
            self.text = _SHORT.repr(value)
        except Exception as err:  # a broken __repr__ must not cost the error itself
            self.text = f"<{self.type_name} object; its repr failed: {err!r}>"

    def __repr__(self) -> str:
        return self.text


def _portable(value: Any, depth: int = 0) -> bool:
    """Small plain data (numbers, short strings, small containers of them) travels as itself."""
    kind = type(value)
    if kind in PLAIN:
        return not isinstance(value, (str, bytes)) or len(value) <= 10_000
    if kind in (tuple, list, set, frozenset) and depth < 3 and len(value) <= 100:
        return all(_portable(v, depth + 1) for v in value)
    if kind is dict and depth < 3 and len(value) <= 100:
        return all(_portable(k, depth + 1) and _portable(v, depth + 1) for k, v in value.items())
    return False


def _scope(frame: Any, with_locals: bool) -> Scope:
    """(module name, module level?, locals or None, the frame's key, the line it stands at)."""
    module_level = frame.f_code.co_flags & 0x3 == 0 and frame.f_locals is frame.f_globals
    values = None
    if with_locals and not module_level:
        values = {}
        for name, value in list(frame.f_locals.items())[:MAX_LOCALS]:
            values[name] = value if _portable(value) else ChildRepr(value)
    return frame.f_globals.get("__name__"), module_level, values, id(frame), frame.f_lineno


def frames_of_traceback(tb: TracebackType | None, seen: dict[Any, Any]) -> tuple[list[Any], list[Scope]]:
    """The frames of ``tb`` outside nbtimeout, with their scopes; ``seen`` is shared by a chain."""
    entries = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR) and tb.tb_lineno:
            entries.append(tb)
        tb = tb.tb_next
    if len(entries) > MAX_FRAMES:
        entries = entries[:50] + entries[50 - MAX_FRAMES:]
    frames, scopes = [], []
    for depth, entry in enumerate(reversed(entries)):
        frame, code = entry.tb_frame, entry.tb_frame.f_code
        # One tuple per place and one scope per frame: repeats pickle as references.
        frames.append(seen.setdefault((id(code), entry.tb_lineno), (
            code.co_filename, entry.tb_lineno, code.co_name, getattr(code, "co_qualname", code.co_name),
            code.co_firstlineno, signature_of(code))))
        scope = seen.get(id(frame))
        if scope is None or (scope[2] is None and not scope[1] and depth < LOCALS_DEPTH):
            scope = seen[id(frame)] = _scope(frame, depth < LOCALS_DEPTH)
        scopes.append(scope)
    return frames[::-1], scopes[::-1]


def scopes(travelled: list[Scope], lines: dict[int, tuple[int, ...]]) -> list[tuple[Any, ...]]:
    """In the kernel, what ``attach`` needs for each frame: globals, locals, key, line, the lines
    where the frame was met (``lines[key]``)."""
    scopes = []
    for module_name, module_level, values, key, line in travelled:
        module = sys.modules.get(module_name or "")
        f_globals = getattr(module, "__dict__", None)
        if not isinstance(f_globals, dict):
            f_globals = {"__name__": module_name}
        missing = None if module_level or values is not None else NOT_DEEP
        scopes.append((f_globals, FrameLocals(values or {}, f_globals, missing), key, line, lines[key]))
    return scopes
