"""A forked child's exception, carried whole: its chain, its frames and its frames' locals.

In the child, ``carry`` describes the exception and everything linked to it (``__cause__``,
``__context__``, an exception group's members) one by one: each travels pickled on its own, so
one that cannot be pickled (or unpickled) is replaced by a stand-in keeping its type name and
message, and the rest of the chain still arrives. Frames travel as ``frames`` describes them.
In the kernel, ``rebuild`` links the exceptions again and gives each its rebuilt traceback.
"""

from __future__ import annotations

import builtins
import pickle
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from .. import _pickling as pickling
from .._traceback import RemoteTraceback, attach
from .frames import frames_of_traceback, scopes
from .protocol import ChildError

MAX_LINKS = 64  # exceptions in one chain (groups included)
_LINKS = vars(BaseException)
STANDIN_NOTE = ("nbtimeout: the fork child's {name} could not be carried back ({why}); "
                "this stand-in keeps its type name and message")


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
            blob = pickling.dumps(payload, protocol=5)
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
    # Through BaseException's own descriptor and the instance dict: a class may refuse setattr, and
    # a global pickling hook for exceptions (tblib's, installed by distributed) uses setattr.
    BaseException.args.__set__(error, args)
    vars(error).update(state)
    return error


def _link(error: BaseException, in_group: bool, seen: dict[Any, Any]) -> Link:
    base = next(c for c in type(error).__mro__ if c.__module__ == "builtins")
    blob, why = (None, "") if in_group else _pickled(error)
    notes = getattr(error, "__notes__", None)
    link = Link(blob, type(error).__module__, type(error).__qualname__, base.__name__, _message(error),
                [str(n) for n in notes] if isinstance(notes, list) else [], why)
    link.frames, link.scopes = frames_of_traceback(error.__traceback__, seen)
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
            object.__setattr__(error, "__class__", home)
        except TypeError:  # another memory layout: keep the copy
            pass


def rebuild(carried: CarriedError) -> BaseException:
    """The child's exception with its chain, tracebacks and (in ``remote_traceback``) its text."""
    try:
        error = _rebuild(carried)
    except Exception as err:  # a user class refusing attributes, ...: the child's text still arrives
        error = ChildError(carried.text)
        error.__notes__ = [f"nbtimeout: the fork child's exception could not be rebuilt here ({err!r})"]
    object.__setattr__(error, "remote_traceback", RemoteTraceback(carried.text))
    return error


def _rebuild(carried: CarriedError) -> BaseException:
    links, built, made = carried.links, {}, {}  # made: rebuilt frames, shared across the chain
    met: dict[int, set[int]] = {}  # the lines at which each child frame was met, in any link
    for link in links:
        for (_file, lineno, *_rest), (*_scope, key, _line) in zip(link.frames, link.scopes, strict=True):
            met.setdefault(key, set()).add(lineno)
    lines = {key: tuple(sorted(found)) for key, found in met.items()}

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
        attach(error, link.frames, scopes(link.scopes, lines), made)
        for member, j in zip(getattr(error, "exceptions", ()), link.members, strict=False):
            get(j, member)
        # Through BaseException's own descriptors: a class may override __setattr__.
        _LINKS["__cause__"].__set__(error, None if link.cause is None else get(link.cause))
        _LINKS["__context__"].__set__(error, None if link.context is None else get(link.context))
        _LINKS["__suppress_context__"].__set__(error, link.suppress_context)
        return error

    return get(0)
