"""The contents of an object that existed before the cell: noted, compared, and sent when changed.

A fingerprint keeps the object's parts themselves (compared by identity, values by value) and
watches large buffers (see watch.py), so change detection never pickles data. ``current`` is what
travels when the object did change: its new contents, in a form ``inplace.put_back`` can write into
the kernel's object.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import operator
import pickle
import zlib
from typing import Any

import cloudpickle

from .kinds import ATOMS, kind, rng_state_holder
from .refpickle import Forced, custom_state
from .refs import slot_names
from .watch import Watch, array_region, dict_version, list_items

EMPTY = "<empty cell>"


class Items:
    """A sequence of an object's parts, equal to another when each part is the same object."""

    __slots__ = ("items",)

    def __init__(self, items: Any) -> None:
        self.items = tuple(items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Items) or len(self.items) != len(other.items):
            return False
        # At C speed while every part is the very same object (the common case: nothing changed);
        # atoms re-made with the same value are compared by value only then.
        return all(map(operator.is_, self.items, other.items)) or all(map(_same, self.items, other.items))

    __hash__ = None  # type: ignore[assignment]


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    return type(a) is type(b) and type(a) in ATOMS and a == b


def _flat(pairs: Any) -> Items:
    return Items(itertools.chain.from_iterable(pairs))


def _attrs(obj: Any) -> Items | None:
    attrs = getattr(obj, "__dict__", None)
    return _flat(attrs.items()) if type(attrs) is dict else None


def _slots(obj: Any) -> Items:
    return Items(getattr(obj, name, EMPTY) for name in slot_names(type(obj)))


def fingerprint(obj: Any, before: bool = True, digest: Any = None) -> Any:
    """What ``obj`` holds now; ``fingerprint(x) == fingerprint(x, before=False)`` while unchanged.

    None: nothing to watch (immutable) or nothing that could be watched (unpicklable opaque object).
    ``digest`` pickles an opaque object (by default with cloudpickle, holding copies of all it holds).
    """
    what = kind(obj)
    if what == "seq":
        if len(obj) >= _BIG and (region := list_items(obj)) is not None:
            # The array of item pointers, watched: identity of every item, no copy of it.
            return what, len(obj), region[0], Watch(*region, before=before)
        return what, Items(obj), _attrs(obj)
    if what == "map":
        if (version := dict_version(obj)) is not None:
            # A big dict also keeps its keys and values (not compared: for what changed, see patch).
            return what, version, Kept((tuple(obj), tuple(obj.values())) if before and len(obj) >= _BIG else None)
        return what, _flat(obj.items()), getattr(obj, "default_factory", None), _attrs(obj)
    if what == "set":  # by identity: 1 replaced by 1.0, or by an equal object, is a change
        return what, len(obj), Items(obj), _attrs(obj)
    if what == "buffer":
        return what, len(obj), zlib.crc32(memoryview(obj).cast("B"))
    if what == "array":  # a subclass's own arrays (a masked array's mask) are watched with it
        inner = [Watch(*array_region(v), before=before) for v in vars(obj).values() if kind(v) == "array"] \
            if type(getattr(obj, "__dict__", None)) is dict else []
        return (what, obj.shape, obj.strides, obj.dtype, obj.flags.writeable, Watch(*array_region(obj), before=before),
                _attrs(obj), *inner)
    if what == "frame":
        return what, *_frame(obj, before)
    if what == "extension":
        return what, *_extension(obj, before, digest)
    if what == "class":
        return what, _flat(vars(obj).items())
    if what == "function":
        return what, Items((obj.__defaults__, obj.__kwdefaults__, obj.__code__)), _attrs(obj)
    if what == "cell":
        return what, Items((obj.cell_contents,)) if _full(obj) else EMPTY
    if what == "object":
        # A library object that pickles itself may keep state outside __dict__ (in C): digest it.
        hidden = (digest or deep_digest)(obj) if custom_pickling(type(obj)) else None
        return what, type(obj), _attrs(obj), _slots(obj), hidden
    if what == "generator":  # cannot be pickled, but whether it ran on can be seen (and named)
        frame = getattr(obj, "gi_frame", None) or getattr(obj, "cr_frame", None)
        return what, None if frame is None else frame.f_lasti
    if what == "rng":
        return what, pickle.dumps(rng_state_holder(obj).state)
    if what == "opaque":
        return what, (digest or deep_digest)(obj)
    return None  # index, tuple, module ...: nothing in place to watch


# Lists this long are watched through their item array; shorter ones are cheaper to copy. From
# this size on, a list or dict that changed sends only the items that changed.
_BIG = 4096


class Kept:
    """Something a fingerprint keeps that is not part of its comparison."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Kept)

    __hash__ = None  # type: ignore[assignment]


def patch(obj: Any, before: Any) -> tuple | None:
    """``("patch", [(index or key, new item)])``: what a big list or dict that changed now holds where
    it changed, when that is all it takes (same length and item array, or same keys first, none
    gone); None otherwise (its whole contents then travel)."""
    if type(obj) is list and len(before) == 4 and isinstance(before[3], Watch):
        _, length, addr, watch = before
        region = list_items(obj)
        if region is None or len(obj) != length or region[0] != addr:
            return None
        spans = watch.written_spans()
        if spans is None:
            return None
        width = ctypes.sizeof(ctypes.c_void_p)
        indices = sorted({i for start, end in spans for i in range(start // width, min(-(-end // width), length))})
        return "patch", [(i, obj[i]) for i in indices]
    if type(obj) is dict and len(before) == 3 and isinstance(before[2], Kept) and before[2].value is not None:
        keys, values = before[2].value
        now_keys = tuple(obj)
        if len(now_keys) < len(keys) or not all(map(operator.is_, keys, now_keys[:len(keys)])):
            return None
        now_values = tuple(obj.values())
        changed = itertools.compress(range(len(now_keys)), map(operator.is_not, values, now_values))
        added = range(len(keys), len(now_keys))
        return "patch", [(now_keys[i], now_values[i]) for i in itertools.chain(changed, added)]
    return None


def _full(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - the question is whether it raises
    except ValueError:
        return False
    return True


def _frame(obj: Any, before: bool) -> tuple:
    mgr = obj._mgr
    blocks = tuple(mgr.blocks)
    parts = Items((mgr, *mgr.axes, *blocks, *(b.mgr_locs for b in blocks), *(b.values for b in blocks)))
    data = tuple(_values(b.values, before) for b in blocks)
    # What is not data: a Series' name, the names of the axes.
    meta = Items([*(getattr(obj, n, None) for n in obj._metadata),
                  *(name for ax in mgr.axes for name in (len(ax.names), *ax.names))])
    return parts, data, _flat(obj.attrs.items()), obj.flags.allows_duplicate_labels, meta


def _values(values: Any, before: bool) -> Any:
    if kind(values) == "array":
        return Watch(*array_region(values), before=before)
    return _extension(values, before)


def custom_pickling(cls: type) -> bool:
    """A class not of the notebook that says itself how it pickles (its state may not be in __dict__)."""
    if cls.__module__ == "__main__":
        return False
    return any(name in vars(c) for c in cls.__mro__[:-1] for name in _OWN_PICKLING)


_OWN_PICKLING = ("__reduce__", "__reduce_ex__", "__getstate__", "__setstate__")


def _extension(obj: Any, before: bool, digest: Any = None) -> tuple:
    """An extension array by its numpy parts (StringArray, Categorical, masked); others by identity."""
    values = list(getattr(obj, "__dict__", {}).values())
    # NDArrayBacked (StringArray, datetimes) keeps its array in a C slot, not in __dict__.
    values += [getattr(obj, name) for name in _EXTENSION_PARTS if hasattr(obj, name)]
    parts = Items(values)
    arrays = tuple(Watch(*array_region(v), before=before) for v in values if kind(v) == "array")
    if not arrays and not hasattr(obj, "_pa_array"):  # arrow arrays are immutable; others: digest
        return parts, (digest or deep_digest)(obj)
    return parts, arrays


_EXTENSION_PARTS = ("_ndarray", "_codes", "_data", "_mask", "_pa_array")


class _Hashing:
    """A file that hashes what is written to it: a pickle digested as it is made, never held whole."""

    __slots__ = ("hasher",)

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        return len(data)


def deep_digest(obj: Any) -> bytes | None:
    """A digest of ``obj``'s whole pickle (everything it holds), or None. The pickle streams into
    the hash: a 1 GB structure costs its pickler's memo, not a 1 GB copy."""
    hasher = hashlib.blake2b(digest_size=16)
    try:
        cloudpickle.CloudPickler(_Hashing(hasher), protocol=5,
                                 buffer_callback=lambda b: hasher.update(b.raw()) and False).dump(obj)
    except Exception:
        return None
    return hasher.digest()


def current(obj: Any) -> tuple:
    """The new contents of a changed object, to be pickled (pre-existing parts go by reference)."""
    what = kind(obj)
    attrs = getattr(obj, "__dict__", None)
    attrs = dict(attrs) if type(attrs) is dict and what in ("seq", "map", "set", "object") else None
    if what == "seq":
        return what, list(obj), attrs
    if what == "map":
        return what, list(obj.items()), getattr(obj, "default_factory", None), attrs
    if what == "set":
        return what, list(obj), attrs
    if what == "frame":
        return what, obj.__getstate__()
    if what == "class":
        return what, {k: v for k, v in vars(obj).items() if k not in ("__dict__", "__weakref__")}
    if what == "function":
        return what, obj.__defaults__, obj.__kwdefaults__, dict(vars(obj)), obj.__code__
    if what == "cell":
        return what, obj.cell_contents if _full(obj) else EMPTY
    if what == "rng":
        return what, rng_state_holder(obj).state
    if what in ("object", "opaque") and custom_pickling(type(obj)):
        return custom_state(obj)
    if what == "object":
        slots = {name: getattr(obj, name) for name in slot_names(type(obj)) if hasattr(obj, name)}
        return what, type(obj), attrs, slots
    return what, Forced(obj)  # buffer, array, extension, opaque: a copy of the object itself
