"""Give an exception the child's stack as a real traceback, so IPython shows the cell lines.

Frames cannot be sent between processes, so each one is rebuilt by running a one-line ``raise``
compiled with the child's filename, line number, function name and first line (Jinja2's
technique); IPython then reads the source from ``linecache``, which the child shares with the
kernel. Each rebuilt frame runs with the globals of its module in the kernel and, as its
``f_locals``, the child's locals as they were carried back (``%debug`` reads them there).
"""

from __future__ import annotations

import builtins
import functools
import re
import types
from collections.abc import Mapping, Sequence
from types import CodeType, FrameType, TracebackType
from typing import Any

from ._where import Frames

# faulthandler's dump: '  File "/x/y.py", line 12 in func' (most recent call first)
_DUMPED = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<name>.*)$')
# Said by a rebuilt frame whose locals did not travel (a stopped or crashed child dumps only lines).
NOT_CARRIED = "the fork child's variables were not carried back for this frame"
# ``where`` of a stop or crash whose child dumped no stack.
NO_STACK = ("line unknown: the fork child gave no stack (stopped before it could, or its SIGTERM handler "
            "was replaced from C)")
IN_OURS = "line unknown: the fork child was stopped in nbtimeout's own work, outside the cell's code"


class RemoteTraceback(Exception):  # noqa: N818 - named for what it holds, like pebble's
    """The child's formatted traceback (``error.remote_traceback`` of errors from forked calls)."""

    def __str__(self) -> str:
        return "\n\n" + self.args[0]


class FrameLocals(dict):
    """``f_locals`` of a rebuilt frame: the child's locals; a name it lacks says why, if known.

    Names found in the frame's globals or builtins are left to them (a ``KeyError``, as for any
    mapping), so ``len`` or a module still resolve in ``%debug``.
    """

    def __init__(self, values: Mapping[str, Any], f_globals: dict[str, Any], missing: str | None) -> None:
        super().__init__(values)
        self._globals, self._missing = f_globals, missing

    def __missing__(self, name: str) -> Any:
        if self._missing is None or name in self._globals or hasattr(builtins, name):
            raise KeyError(name)
        raise NameError(f"name {name!r} is not available: {self._missing}", name=name)


def parse_dump(text: str) -> Frames:
    """Frames of the first stack in a faulthandler dump, outermost first."""
    first = text.split("Stack (most recent call first):")[:2][-1]  # grandchildren may dump too
    found = [(m["file"], int(m["line"]), m["name"]) for m in map(_DUMPED.match, first.splitlines()) if m]
    return found[::-1]


# (parameter names in co_varnames order, positional count, keyword-only count, *args?, **kwargs?)
Signature = tuple[tuple[str, ...], int, int, bool, bool]
_GET_FRAME = "__import__('sys')._getframe()"


class NotCarried:
    """The value of a parameter whose frame's variables did not travel back."""

    def __repr__(self) -> str:
        return "<not carried back from the fork child>"


def signature_of(code: CodeType) -> Signature | None:
    """The parameters of a function's code, as ``attach`` rebuilds them; None for module-level code."""
    if not code.co_flags & 0x1:  # CO_OPTIMIZED: a function body
        return None
    varargs, varkw = bool(code.co_flags & 0x4), bool(code.co_flags & 0x8)
    count = code.co_argcount + code.co_kwonlyargcount + varargs + varkw
    return tuple(code.co_varnames[:count]), code.co_argcount, code.co_kwonlyargcount, varargs, varkw


@functools.lru_cache(maxsize=4096)  # a deep recursion repeats a few frames thousands of times
def _frame_code(filename: str, line: int, lines: tuple[int, ...], name: str, qualname: str,
                firstlineno: int, signature: Signature | None) -> CodeType:
    """Code that stops at ``line`` of ``filename`` (returning its frame, or raising), with an
    instruction on each of ``lines`` (the lines where the child's frame was met in a chain).

    co_firstlineno is the function's own, as IPython's frame display (stack_data) looks the
    function up by name and first line; a function keeps its parameter names, which IPython
    shows (``in load(path)``). ``__import__`` stands for "true" (a builtin nobody shadows).
    """
    function = signature is not None
    stop = f"return {_GET_FRAME}" if function else "raise __import__"
    first = min(firstlineno, line) if firstlineno > 0 else 1
    text = [""] * (max(line, *lines) - first + 1)
    indent = " " if function else ""
    for number in sorted({*lines, line}):
        if number > first or not function:
            text[number - first] = indent + (f"if __import__: {stop}" if number == line else "__import__")
    if function:
        names, positional, kwonly, varargs, varkw = signature  # type: ignore[misc]
        slots = [f"_{i}" for i in range(len(names))]
        star = ["*" + (slots[positional + kwonly] if varargs else "")] if varargs or kwonly else []
        params = slots[:positional] + star
        params += slots[positional:positional + kwonly] + (["**" + slots[-1]] if varkw else [])
        text[0] = f"def _f({', '.join(params)}):" + (f" {stop}" if line == first else "")
    code = compile("\n".join(text), filename, "exec")
    if function:
        code = next(c for c in code.co_consts if isinstance(c, CodeType))
        code = code.replace(co_varnames=names + code.co_varnames[len(names):])
    extra = {"co_qualname": qualname} if hasattr(code, "co_qualname") else {}
    code = code.replace(co_name=name, co_firstlineno=first, **extra)
    return _without_columns(code) if hasattr(code, "co_positions") else code


def _without_columns(code: CodeType) -> CodeType:
    """``code`` with lines but no columns: Python's traceback then underlines nothing (our
    columns are not the source's). The location table format of CPython 3.11+ (Objects/locations.md):
    per run of at most 8 code units, a header byte ``0x80 | code << 3 | units - 1``; code 13 has
    no columns and a zigzag varint line delta, code 15 no location at all."""
    table, previous = bytearray(), code.co_firstlineno
    for start, end, line in code.co_lines():
        units = (end - start) // 2
        while units > 0:
            chunk = min(units, 8)
            if line is None:
                table.append(0x80 | 15 << 3 | chunk - 1)
            else:
                table.append(0x80 | 13 << 3 | chunk - 1)
                delta, previous = line - previous, line
                value = -delta << 1 | 1 if delta < 0 else delta << 1
                while value >= 64:
                    table.append(64 | value & 63)
                    value >>= 6
                table.append(value)
            units -= chunk
    return code.replace(co_linetable=bytes(table))


def _call(code: CodeType, f_globals: dict[str, Any], values: Mapping[str, Any],
          signature: Signature | None) -> FrameType:
    """A finished frame of ``code``, run with these globals and (as its locals) ``values``."""
    if signature is None:
        if isinstance(values, FrameLocals):
            values._globals = f_globals
        try:
            exec(code, f_globals, values)
        except TypeError as stopped:  # "raise __import__": exceptions must derive from BaseException
            return stopped.__traceback__.tb_next.tb_frame  # type: ignore[union-attr]
        raise AssertionError("a rebuilt frame did not stop")
    names, positional, kwonly, varargs, varkw = signature
    given = [values.get(n, NotCarried()) for n in names]
    args = given[:positional]
    if varargs:
        args += given[positional + kwonly] if isinstance(given[positional + kwonly], tuple) else []
    kwargs = dict(zip(names[positional:positional + kwonly], given[positional:positional + kwonly], strict=True))
    if varkw and isinstance(given[-1], dict) and all(isinstance(k, str) for k in given[-1]):
        kwargs.update(given[-1])
    frame = types.FunctionType(code, f_globals)(*args, **kwargs)
    frame.f_locals.update({k: v for k, v in values.items() if k not in names})  # kept: not fast slots
    return frame


def _lasti(code: CodeType, lineno: int, default: int) -> int:
    """The first instruction of ``code`` on ``lineno`` (what a traceback entry points at)."""
    return next((start for start, _end, line in code.co_lines() if line == lineno), default)


def _def_line(filename: str, lineno: int, name: str) -> int:
    """Where function ``name`` enclosing ``lineno`` starts, read off the source (a stack dump
    gives no first line; IPython needs it to show the function's lines); 1 if not found."""
    import linecache

    header = re.compile(rf"\s*(async\s+)?def\s+{re.escape(name)}\b")
    for number in range(lineno, 0, -1):
        if header.match(linecache.getline(filename, number)):
            return number
    return 1


def attach(error: BaseException, frames: Sequence[tuple[Any, ...]],
           scopes: Sequence[tuple[dict[str, Any], Mapping[str, Any], Any, int, tuple[int, ...]]] | None = None,
           made: dict[Any, FrameType] | None = None) -> BaseException:
    """``error`` with a traceback made of ``frames`` (outermost first); returns ``error``.

    A frame is ``(filename, lineno, name)``, optionally followed by ``qualname, firstlineno,
    signature`` (see ``signature_of``). ``scopes[i]`` is ``(f_globals, f_locals, key, line,
    lines)`` for frame ``i``; without it the frame's locals say they were not carried back.
    Entries with the same ``key`` (one frame of the child, met in several exceptions of a chain
    at ``lines``) share one rebuilt frame, kept in ``made``, standing at ``line`` (where the
    child's frame last was): IPython shows a shared frame at that line, Python's traceback module
    each entry at its own.
    """
    made = {} if made is None else made
    tb: TracebackType | None = None
    for index in reversed(range(len(frames))):
        filename, lineno, name, *more = frames[index]
        if not lineno or lineno <= 0:
            continue
        qualname, firstlineno, signature = more if len(more) == 3 else (name, _def_line(filename, lineno, name), None)
        if scopes is None:
            f_globals, values, key, line, lines = ({"__name__": "__main__"}, FrameLocals({}, {}, NOT_CARRIED),
                                                   None, lineno, (lineno,))
        else:
            f_globals, values, key, line, lines = scopes[index]
        frame = None if key is None else made.get(key)
        if frame is None:
            code = _frame_code(filename, line or lineno, lines, name, qualname, firstlineno, signature)
            frame = _call(code, f_globals, values, signature)
            if key is not None:
                made[key] = frame
        lasti = frame.f_lasti if lineno == frame.f_lineno else _lasti(frame.f_code, lineno, frame.f_lasti)
        tb = TracebackType(tb, frame, lasti, lineno)
    return BaseException.with_traceback(error, tb)  # BaseException's own: a class may override it


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
