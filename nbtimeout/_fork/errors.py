"""A forked child's exception, carried whole: its chain, its frames and its frames' locals.

In the child, ``carry`` describes the exception and everything linked to it (``__cause__``,
``__context__``, an exception group's members) one by one: each travels pickled on its own, so
one that cannot be pickled (or unpickled) is replaced by a stand-in keeping its type name and
message, and the rest of the chain still arrives. Frames travel as (file, line, function) with
the innermost frames' locals, small plain values as themselves and anything else as its repr.
In the kernel, ``rebuild`` links the exceptions again and gives each its rebuilt traceback.
"""

from __future__ import annotations

import builtins
import pickle
import reprlib
import sys
import traceback
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import cloudpickle

from .._traceback import FrameLocals, RemoteTraceback, attach, signature_of
from .._where import PACKAGE_DIR
from .protocol import ChildError

MAX_LINKS = 64  # exceptions in one chain (groups included)
MAX_FRAMES = 5000  # per exception: a deep recursion keeps its outermost 50 and innermost frames
LOCALS_DEPTH = 20  # innermost frames of each exception whose locals travel
MAX_LOCALS = 200  # names per frame
PLAIN = (type(None), bool, int, float, complex, str, bytes)
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 2000, 2000, 30, 30
NOT_DEEP = f"only the {LOCALS_DEPTH} innermost frames' variables are carried back from the fork child"
STANDIN_NOTE = ("nbtimeout: the fork child's {name} could not be carried back ({why}); "
                "this stand-in keeps its type name and message")


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


@dataclass
class Link:
    """One exception of the chain; ``cause``/``context``/``members`` are indices of other links."""

    blob: bytes | None  # the exception pickled alone (no chain, no traceback), if that works
    module: str
    qualname: str
    base: str  # the nearest built-in exception class, for the stand-in
    message: str
    notes: list[str]
    why: str = ""  # why there is no blob
    frames: list[tuple[Any, ...]] = field(default_factory=list)  # see _traceback.attach
    scopes: list[tuple[str | None, bool, dict[str, Any] | None, int, int]] = field(default_factory=list)
    cause: int | None = None
    context: int | None = None
    suppress_context: bool = False
    members: list[int] = field(default_factory=list)


class CarriedError(Exception):
    """The child's exception as it travels: its links (``[0]`` was raised) and formatted text."""

    def __init__(self, links: list[Link], text: str) -> None:
        super().__init__(links, text)
        self.links, self.text = links, text

    def __str__(self) -> str:
        return self.text


# --- in the child ------------------------------------------------------------------------------

def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return "<exception str() failed>"  # what the traceback module prints


def _pickled(error: BaseException) -> tuple[bytes | None, str]:
    """``error`` alone, pickled and proven to unpickle; if its class refuses its own ``args`` (a
    custom ``__init__``), pickled as class, args and attributes, rebuilt without calling it."""
    why = ""
    for payload in (error, _Raw(error)):
        try:
            blob = cloudpickle.dumps(payload, protocol=5)
            pickle.loads(blob)
            return blob, ""
        except Exception as err:
            why = why or f"{type(err).__name__}: {_message(err)}"
    return None, why


class _Raw:
    """Pickles an exception as ``BaseException.__new__`` and its state: no ``__init__`` runs."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self.error), self.error.args, vars(self.error))


def _restore(kind: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    error = BaseException.__new__(kind, *args)
    error.args = args
    vars(error).update(state)
    return error


def _scope(frame: Any, with_locals: bool) -> tuple[str | None, bool, dict[str, Any] | None, int, int]:
    """(module name, module level?, locals or None, the frame's key, the line it stands at)."""
    module_level = frame.f_code.co_flags & 0x3 == 0 and frame.f_locals is frame.f_globals
    values = None
    if with_locals and not module_level:
        values = {}
        for name, value in list(frame.f_locals.items())[:MAX_LOCALS]:
            values[name] = value if _portable(value) else ChildRepr(value)
    return frame.f_globals.get("__name__"), module_level, values, id(frame), frame.f_lineno


def _frames(tb: TracebackType | None, seen: dict[Any, Any]) -> tuple[list[Any], list[Any]]:
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


def _link(error: BaseException, in_group: bool, seen: dict[Any, Any]) -> Link:
    base = next(c for c in type(error).__mro__ if c.__module__ == "builtins")
    blob, why = (None, "") if in_group else _pickled(error)
    notes = getattr(error, "__notes__", None)
    link = Link(blob, type(error).__module__, type(error).__qualname__, base.__name__, _message(error),
                [str(n) for n in notes] if isinstance(notes, list) else [], why)
    link.frames, link.scopes = _frames(error.__traceback__, seen)
    link.suppress_context = error.__suppress_context__
    return link


def carry(error: BaseException) -> CarriedError:
    """Describe ``error`` and all linked to it, for the kernel; never fails."""
    try:
        text = "".join(traceback.format_exception(error))[-200_000:]
    except Exception:
        text = f"{type(error).__qualname__}: {_message(error)}"
    try:
        return CarriedError(_walk(error), text)
    except BaseException as err:  # MemoryError near a memory cap, a broken exception ...
        why = f"{type(err).__name__} while describing it"
        return CarriedError([Link(None, type(error).__module__, type(error).__qualname__, "Exception",
                                  _message(error), [], why)], text)


def _walk(top: BaseException) -> list[Link]:
    index, seen = {id(top): 0}, {}
    order, links = [top], [_link(top, False, seen)]
    position = 0
    while position < len(order):
        error, link = order[position], links[position]
        group_sent = link.blob is not None and isinstance(error, getattr(builtins, "BaseExceptionGroup", ()))

        def find(other: BaseException | None, in_group: bool = False) -> int | None:
            if other is None:
                return None
            if id(other) not in index:
                if len(order) >= MAX_LINKS:
                    return None
                index[id(other)] = len(order)
                order.append(other)
                links.append(_link(other, in_group, seen))
            return index[id(other)]

        link.cause, link.context = find(error.__cause__), find(error.__context__)
        for member in getattr(error, "exceptions", ()) if hasattr(error, "derive") else ():
            # A group that pickled carries its members' objects: theirs would be sent twice.
            link.members.append(find(member, in_group=group_sent))  # type: ignore[arg-type]
        position += 1
    return links


# --- in the kernel -----------------------------------------------------------------------------

def _standin(link: Link, members: list[BaseException]) -> BaseException:
    """An exception of the same name, module and built-in base, whose str() is the message."""
    base = getattr(builtins, link.base, Exception)
    namespace = {"__module__": link.module, "__qualname__": link.qualname, "__str__": lambda self: link.message}
    error: BaseException
    try:
        if members:  # a group: BaseExceptionGroup's own constructor takes the members
            kind = type(link.qualname.rsplit(".", 1)[-1], (base,), namespace)
            error = kind(link.message, members)
        else:
            kind = type(link.qualname.rsplit(".", 1)[-1], (ChildError, base), namespace)
            error = kind(link.message)
    except Exception:
        error = ChildError(f"{link.qualname}: {link.message}")
    name = link.qualname if link.module in ("builtins", "__main__") else f"{link.module}.{link.qualname}"
    note = STANDIN_NOTE.format(name=name, why=link.why or "it could not be unpickled in the kernel")
    error.__notes__ = [*link.notes, note]  # what add_note() does, also before Python 3.11
    return error


def _home(error: BaseException, link: Link) -> None:
    """Give a by-value copy of a notebook's exception class back its kernel class, so that
    ``except MyError`` in the kernel catches what the child raised."""
    home: Any = sys.modules.get(link.module)
    for part in link.qualname.split("."):
        home = getattr(home, part, None)
    kind = type(error)
    if isinstance(home, type) and home is not kind and issubclass(home, BaseException) \
            and home.__qualname__ == kind.__qualname__:
        try:
            error.__class__ = home
        except TypeError:  # another memory layout: keep the copy
            pass


def _scopes(link: Link) -> list[tuple[dict[str, Any], FrameLocals, int, int]]:
    scopes = []
    for module_name, module_level, values, key, line in link.scopes:
        module = sys.modules.get(module_name or "")
        f_globals = getattr(module, "__dict__", None)
        if not isinstance(f_globals, dict):
            f_globals = {"__name__": module_name}
        missing = None if module_level or values is not None else NOT_DEEP
        scopes.append((f_globals, FrameLocals(values or {}, f_globals, missing), key, line))
    return scopes


def rebuild(carried: CarriedError) -> BaseException:
    """The child's exception with its chain, tracebacks and (in ``remote_traceback``) its text."""
    links, built, made = carried.links, {}, {}  # made: rebuilt frames, shared across the chain

    def get(i: int, given: BaseException | None = None) -> BaseException:
        if i in built:
            return built[i]
        link = links[i]
        error = given
        if error is None and link.blob is not None:
            try:
                error = pickle.loads(link.blob)
            except Exception as err:
                link.why = f"unpickling it in the kernel failed: {type(err).__name__}: {err}"
        if error is None:
            error = _standin(link, [get(m) for m in link.members])
        elif given is None:
            _home(error, link)
        built[i] = error
        attach(error, link.frames, _scopes(link), made)
        for member, j in zip(getattr(error, "exceptions", ()), link.members, strict=False):
            get(j, member)
        error.__cause__ = None if link.cause is None else get(link.cause)
        error.__context__ = None if link.context is None else get(link.context)
        error.__suppress_context__ = link.suppress_context
        return error

    error = get(0)
    error.remote_traceback = RemoteTraceback(carried.text)  # type: ignore[attr-defined]
    return error
