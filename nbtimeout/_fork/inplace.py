"""Write a fork cell's changes into the kernel's own objects, so every alias sees them.

The child also sends a *base* of each changed list, dict or object (``base``): the identity of its
parts before the cell. When the kernel's object no longer matches it (a kernel thread wrote to it
during the cell), the cell's change is merged where that is sound (items a list gained at its end
are appended to what the kernel holds now) and otherwise the kernel's is kept (``merge``).
"""

from __future__ import annotations

import itertools
from array import array
from typing import Any

from .kinds import ATOMS, numpy_array, rng_state_holder
from .refs import slot_names
from .state import EMPTY
from .watch import dict_version

_KEEP = ("__dict__", "__weakref__")


def put_back(old: Any, state: tuple) -> tuple[bool, Any]:
    """Update ``old`` from ``state`` (see ``state.current``): (True, old), or (False, a new object)
    when it cannot be done in place (the caller rebinds names and says identity was lost)."""
    what, *data = state
    if what == "patch":  # a big list or dict: only the items that changed (state.patch)
        for key, value in data[0]:
            old[key] = value
    elif what == "seq":
        items, attrs = data
        if hasattr(old, "maxlen"):  # a deque
            old.clear()
            old.extend(items)
        else:
            old[:] = items
        _set_attrs(old, attrs)
    elif what == "map":
        items, factory, attrs = data
        old.clear()
        old.update(dict(items))  # a mapping, not pairs: Counter.update counts the items of an iterable
        if hasattr(old, "default_factory"):
            old.default_factory = factory
        _set_attrs(old, attrs)
    elif what == "set":
        items, attrs = data
        old.clear()
        old.update(items)
        _set_attrs(old, attrs)
    elif what == "frame":
        old.__setstate__(data[0])
    elif what == "class":
        _set_class(old, data[0])
    elif what == "function":
        old.__defaults__, old.__kwdefaults__, attrs, old.__code__ = data
        _set_attrs(old, attrs)
    elif what == "cell":
        if data[0] is EMPTY:
            del old.cell_contents
        else:
            old.cell_contents = data[0]
    elif what == "object":
        cls, attrs, slots = data
        if type(old) is not cls:
            old.__class__ = cls
        _set_attrs(old, attrs)
        for name in slot_names(cls):
            if name in slots:
                setattr(old, name, slots[name])
            elif hasattr(old, name):
                delattr(old, name)
    elif what == "rng":
        rng_state_holder(old).state = data[0]
    elif what == "detached":
        return _put_state(old, *data)
    elif what == "custom":
        return _set_state(old, data[0])
    else:
        return _copy_into(old, data[0])
    return True, old


def _set_state(old: Any, new: Any) -> tuple[bool, Any]:
    """An object that pickles itself: its own ``__setstate__`` takes the new state, if it has one."""
    if type(old) is not type(new) or not hasattr(old, "__setstate__"):
        return False, new
    reduced = new.__reduce_ex__(5)
    state = reduced[2] if isinstance(reduced, tuple) and len(reduced) > 2 else None
    if state is None:
        return False, new
    old.__setstate__(state)
    return True, old


def _put_state(old: Any, cls: type, state: Any) -> tuple[bool, Any]:
    """An object with ``__getstate__`` and no ``__setstate__``: what its pickled state changed is
    written into its ``__dict__`` and slots; what ``__getstate__`` leaves out (a callback, a canvas)
    stays the kernel's."""
    if type(old) is not cls:
        raise TypeError(f"it is a {type(old).__qualname__} in the kernel, not a {cls.__qualname__}")
    new_attrs, new_slots = state if isinstance(state, tuple) else (state, {})
    old_state = old.__getstate__()
    old_attrs, old_slots = old_state if isinstance(old_state, tuple) else (old_state, {})
    attrs = getattr(old, "__dict__", None)
    for name, value in (new_attrs or {}).items():
        if not _same(value, (old_attrs or {}).get(name, _MISSING)):
            attrs[name] = value
    for name in [n for n in (old_attrs or {}) if n not in (new_attrs or {})]:
        attrs.pop(name, None)
    for name, value in (new_slots or {}).items():
        if not _same(value, (old_slots or {}).get(name, _MISSING)):
            setattr(old, name, value)
    return True, old


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and type(a) in ATOMS and a == b)


def _identity(parts: Any) -> int | None:
    try:
        return hash(tuple(p if type(p) in ATOMS else ("id", id(p)) for p in parts))
    except TypeError:  # an unhashable atom (a slice before 3.12)
        return None


def _parts(obj: Any, what: str) -> Any:
    if what == "seq":
        return obj
    if what == "map":
        return itertools.chain.from_iterable(obj.items())
    attrs = getattr(obj, "__dict__", None)
    return itertools.chain.from_iterable(attrs.items()) if type(attrs) is dict else ()


def base(before: Any, now: Any) -> Any:
    """In the child, from an object's fingerprint before the cell (state.py): what the kernel needs to
    see whether it changed the object too, and, for a list, whether the cell only added at its end."""
    if type(before) is not tuple or not before or before[0] not in ("seq", "map", "object"):
        return None
    what = before[0]
    parts = before[2] if what == "object" else before[1]
    if what == "map" and type(parts) is int:  # a dict watched by its version tag (state.py)
        return "version", parts
    if parts is not None and not hasattr(parts, "items"):  # a big list watched by its pointer array
        return None
    items = () if parts is None else parts.items
    if what != "seq":
        return what, _identity(items)
    appended = len(now) >= len(items) and all(map(_same, items, itertools.islice(now, len(items))))
    return what, _identity(items), len(items), appended


def moved_on(old: Any, base: Any) -> bool:
    """In the kernel: whether ``old`` changed since the fork (by another thread)."""
    if base is None:
        return False
    if base[0] == "version":  # any write to a dict moves its version tag on
        now = dict_version(old)
        return now is not None and now != base[1]
    return _identity(_parts(old, base[0])) != base[1]


def merge(old: Any, state: tuple, base: Any) -> bool:
    """Put the cell's change into an object the kernel changed too, where that is sound: a list the
    cell only added items to at its end gets them after what the kernel holds now."""
    if base[0] == "seq" and state[0] == "seq" and base[3] and not hasattr(old, "maxlen"):
        old.extend(state[1][base[2]:])
        return True
    return False


def _copy_into(old: Any, new: Any) -> tuple[bool, Any]:
    """Buffers and arrays of unchanged shape are copied into; anything else is replaced."""
    if isinstance(old, (bytearray, array)) and type(old) is type(new):
        old[:] = new
        return True, old
    if (numpy_array(old) and type(old) is type(new) and old.shape == new.shape and old.dtype == new.dtype
            and old.flags.writeable):
        old[...] = new  # a view writes through to its base, as the cell's own write did
        old.flags.writeable = new.flags.writeable  # a.flags.writeable = False is a change too
        return True, old
    return False, new


def _set_attrs(obj: Any, attrs: dict | None) -> None:
    if attrs is None:
        return
    obj.__dict__.clear()
    obj.__dict__.update(attrs)


def _set_class(cls: type, attrs: dict[str, Any]) -> None:
    for name in [n for n in vars(cls) if n not in attrs and n not in _KEEP]:
        delattr(cls, name)
    for name, value in attrs.items():
        if vars(cls).get(name, _MISSING) is not value:
            setattr(cls, name, value)


_MISSING = object()
