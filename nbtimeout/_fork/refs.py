"""Objects that existed before a fork cell travel back by reference, not as copies.

Before the body the child walks the objects the cell can reach and gives each a *path* from a
name (``cfg``, then the 2nd value, then attribute ``x``). Fork keeps the kernel's graph exactly as
the child found it, so the kernel resolves the same path to the very same object: ``c is
Color.RED``, ``isinstance(q, Q)`` and ``lst[0] is A`` hold. Functions made in the cell are rebuilt
with the kernel's namespace as their globals, so they see later names and ``global x`` writes there.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import pickle
import types
from collections import deque
from typing import Any

import cloudpickle
from cloudpickle.cloudpickle import _function_getstate, _make_empty_cell

from .kinds import ATOMS, is_leaf

# Walking stops after this many objects: a namespace of millions of small objects would cost more
# than it saves. Roots cut short are compared deeply instead (see sync.py).
LIMIT = 200_000

Step = tuple[Any, ...]
Path = tuple[Any, ...]  # (name, step, step, ...)


class Registry:
    """id -> path of every object the walk saw; holds them, so no id is reused in the child."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.paths: dict[int, Path] = {}
        self.objects: dict[int, Any] = {}
        self.expanded: set[int] = set()
        self.truncated: set[str] = set()

    def add(self, obj: Any, path: Path) -> None:
        if id(obj) not in self.paths:
            self.paths[id(obj)] = path
            self.objects[id(obj)] = obj

    def walk(self, names: list[str], deep: set[str]) -> None:
        """Register every name's object, and everything below the ``deep`` ones (``expanded``:
        the objects whose contents are watched; leaves such as arrays are watched, not walked)."""
        for name in names:
            self.add(self.namespace[name], (name,))
        for name in names:
            if name in deep:
                self._expand(self.namespace[name], (name,), name)
        if self.truncated:  # what was seen but not watched travels as a copy: its changes arrive
            for key in [k for k, p in self.paths.items() if len(p) > 1 and k not in self.expanded]:
                del self.paths[key], self.objects[key]

    def _expand(self, root: Any, path: Path, name: str) -> None:
        todo = [(root, path)]
        while todo:
            obj, path = todo.pop()
            if id(obj) in self.expanded:
                continue
            if len(self.expanded) >= LIMIT:
                self.truncated.add(name)
                return
            self.expanded.add(id(obj))
            try:
                below = children(obj, self.namespace)
            except Exception:  # an object that will not be looked into (a proxy, a broken __slots__)
                continue
            for child, step in below:
                if type(child) not in ATOMS:
                    self.add(child, (*path, step))
                    if id(child) not in self.expanded:
                        todo.append((child, self.paths[id(child)]))


    def digest(self, obj: Any) -> bytes | None:
        """A digest of ``obj``'s pickle, the objects it holds that are registered counting as
        references (their own changes are theirs); None if it cannot be pickled."""
        digest = hashlib.blake2b(digest_size=16)
        try:
            digest.update(dumps(Forced(obj), self, [], lambda b: digest.update(b.raw())))
        except Exception:
            return None
        return digest.digest()


def _key_label(key: Any) -> str:
    return repr(key) if type(key) in ATOMS and len(repr(key)) < 40 else "…"


def children(obj: Any, namespace: dict[str, Any]) -> list[tuple[Any, Step]]:
    """The objects directly below ``obj`` with the step that reaches each."""
    if is_leaf(obj):
        return []
    out: list[tuple[Any, Step]] = []
    if isinstance(obj, (list, tuple, deque)):
        out += [(item, ("i", n)) for n, item in enumerate(obj)]
    elif isinstance(obj, dict):
        for n, (key, value) in enumerate(obj.items()):
            out += [(key, ("K", n)), (value, ("k", n, _key_label(key)))]
    elif isinstance(obj, (set, frozenset)):
        out += [(item, ("s", n)) for n, item in enumerate(obj)]
    elif isinstance(obj, type):
        if obj.__module__ == "__main__":  # library classes travel by name anyway
            out += [(v, ("a", k)) for k, v in vars(obj).items() if k not in ("__dict__", "__weakref__")]
        return out
    elif isinstance(obj, types.FunctionType):
        if obj.__globals__ is namespace:
            out += [(cell, ("c", n)) for n, cell in enumerate(obj.__closure__ or ())]
            out += [(obj.__defaults__, ("D",)), (obj.__kwdefaults__, ("W",))]
            out += [(v, ("a", k)) for k, v in vars(obj).items()]
        return out
    elif isinstance(obj, types.CellType):
        try:
            return [(obj.cell_contents, ("x",))]
        except ValueError:
            return []
    elif isinstance(obj, (types.MethodType,)):
        return [(obj.__self__, ("m",)), (obj.__func__, ("f",))]
    out.append((type(obj), ("t",)))
    attrs = getattr(obj, "__dict__", None)
    if type(attrs) is dict:
        out += [(v, ("a", k)) for k, v in attrs.items()]
    for slot in slot_names(type(obj)):
        try:
            out.append((getattr(obj, slot), ("l", slot)))
        except AttributeError:
            pass
    return out


def slot_names(cls: type) -> list[str]:
    """Every ``__slots__`` name of ``cls`` and its bases (``__dict__``/``__weakref__`` left out)."""
    names = []
    for base in cls.__mro__:
        slots = vars(base).get("__slots__", ())
        for slot in [slots] if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__"):
                names.append(slot)
    return names


def resolve(namespace: dict[str, Any], path: Path) -> Any:
    """The object ``path`` names in ``namespace`` (the kernel's, as the child found it)."""
    obj = namespace[path[0]]
    for kind, *args in path[1:]:
        if kind == "i":
            obj = obj[args[0]]
        elif kind in ("k", "K"):
            items = obj.values() if kind == "k" else obj.keys()
            obj = next(itertools.islice(items, args[0], None))
        elif kind == "s":
            obj = next(itertools.islice(iter(obj), args[0], None))
        elif kind == "a":
            obj = vars(obj)[args[0]]
        elif kind == "l":
            obj = getattr(obj, args[0])
        elif kind == "t":
            obj = type(obj)
        elif kind == "c":
            obj = obj.__closure__[args[0]]
        elif kind == "x":
            obj = obj.cell_contents
        elif kind == "D":
            obj = obj.__defaults__
        elif kind == "W":
            obj = obj.__kwdefaults__
        elif kind == "m":
            obj = obj.__self__
        elif kind == "f":
            obj = obj.__func__
    return obj


def describe(path: Path) -> str:
    """``cfg['arr']``, ``obj.x``: how a user would name the object at ``path``."""
    text = str(path[0])
    for kind, *args in path[1:]:
        text += {"i": lambda a: f"[{a[0]}]", "k": lambda a: f"[{a[1]}]", "K": lambda a: ".keys()[…]",
                 "s": lambda a: "{…}", "a": lambda a: f".{a[0]}", "l": lambda a: f".{a[0]}",
                 "t": lambda a: ".__class__", "c": lambda a: f".__closure__[{a[0]}]",
                 "x": lambda a: ".cell_contents", "D": lambda a: ".__defaults__",
                 "W": lambda a: ".__kwdefaults__", "m": lambda a: ".__self__",
                 "f": lambda a: ".__func__"}[kind](args)
    return text


# --- pickling --------------------------------------------------------------------------------------

class Forced:
    """Pickle ``obj`` by value here even though it existed before the cell (its new state)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def _same(obj: Any) -> Any:
    return obj


class RefPickler(cloudpickle.Pickler):
    """cloudpickle, but objects in ``registry`` go as paths and cell functions get the kernel's globals."""

    def __init__(self, file: Any, registry: Registry, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.registry = registry
        self._forced: int | None = None

    def persistent_id(self, obj: Any) -> Any:
        key = id(obj)
        if key == self._forced:
            self._forced = None  # once: further occurrences (a cycle) are the kernel's object
            return None
        path = self.registry.paths.get(key)
        if path is None:
            return None
        return path, type(obj).__qualname__

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Forced:
            self._forced = id(obj.obj)
            return _same, (obj.obj,)
        return super().reducer_override(obj)

    def _dynamic_function_reduce(self, func: types.FunctionType) -> Any:
        if func.__globals__ is not self.registry.namespace:
            return super()._dynamic_function_reduce(func)
        closure = None if func.__closure__ is None else tuple(_make_empty_cell() for _ in func.__closure__)
        state, slotstate = _function_getstate(func)
        del slotstate["__globals__"], slotstate["_cloudpickle_submodules"]
        return _kernel_function, (func.__code__, closure), (state, slotstate), None, None, _set_function_state


# The namespace that functions made in the cell are bound to while the kernel unpickles.
_target: dict[str, Any] = {}


def _kernel_function(code: types.CodeType, closure: tuple | None) -> types.FunctionType:
    return types.FunctionType(code, _target, code.co_name, None, closure)


def _set_function_state(func: types.FunctionType, state: tuple[dict, dict]) -> None:
    attrs, slots = state
    func.__dict__.update(attrs)
    closure = slots.pop("__closure__")
    for mine, theirs in zip(func.__closure__ or (), closure or (), strict=True):
        try:
            mine.cell_contents = theirs.cell_contents
        except ValueError:  # an empty cell stays empty
            pass
    for name, value in slots.items():
        setattr(func, name, value)


def dumps(obj: Any, registry: Registry, buffers: list[pickle.PickleBuffer], also: Any = None) -> bytes:
    """Pickle ``obj``; buffers of 64 KiB and more are appended to ``buffers`` (out of band), and
    ``also`` sees each of them."""
    from .protocol import OUT_OF_BAND

    def keep(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND:
            return True
        buffers.append(buffer)
        if also is not None:
            also(buffer)
        return False

    file = io.BytesIO()
    RefPickler(file, registry, buffer_callback=keep).dump(obj)
    return file.getvalue()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, lookup: Any, buffers: Any) -> None:
        super().__init__(file, buffers=buffers)
        self._lookup = lookup

    def persistent_load(self, pid: Any) -> Any:
        path, type_name = pid
        obj = self._lookup(path)
        if type(obj).__qualname__ != type_name:  # the graph is not the one the child saw
            raise pickle.UnpicklingError(f"{describe(path)} is a {type(obj).__qualname__}, not a {type_name}")
        return obj


def loads(data: Any, namespace: dict[str, Any], buffers: list[Any], lookup: Any = None) -> Any:
    """Unpickle in the kernel: paths resolve in ``namespace``, new functions are bound to it."""
    global _target
    _target = namespace
    try:
        return _Unpickler(io.BytesIO(data), lookup or (lambda p: resolve(namespace, p)), buffers).load()
    finally:
        _target = {}
