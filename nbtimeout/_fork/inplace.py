"""Write a fork cell's changes into the kernel's own objects, so every alias sees them."""

from __future__ import annotations

from array import array
from typing import Any

from .kinds import numpy_array, rng_state_holder
from .refs import slot_names
from .state import EMPTY

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
