"""Pickling a fork cell's changes so that objects the kernel already has travel as references.

Objects in the Registry (refs.py) are pickled as a small integer, an index into a table of paths
that travels beside the pickle; the kernel resolves only the paths used. Functions made in the
cell are rebuilt with the kernel's namespace as their globals (cloudpickle would give each its own
dict), so they see names defined later and ``global x`` in them writes the kernel's ``x``.
Weak references travel as references to their target.
Wrappers that pickle by name (``lru_cache``, ``NewType``) or hold a lock (``singledispatch``'s
cache, 3.11's ``cached_property``) are rebuilt by value around the cell's function. The check the
child makes refuses a by-name reference to a notebook name the kernel does not have yet, so such an
entry is left out on its own instead of failing the whole pickle in the kernel.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import types
import typing
import weakref
from typing import Any

from .. import _pickling as pickling
from .protocol import OUT_OF_BAND
from .refs import Path, Registry, describe, resolve

Table = list[tuple[Path, str]]  # (path, type name) of each object referenced


class Forced:
    """Pickle ``obj`` by value here even though it existed before the cell (its new state)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def custom_state(obj: Any) -> tuple:
    """What a changed object that pickles itself sends back: its pickled state when it has no
    ``__setstate__`` and that state is its ``__dict__`` (and slots), so the kernel can write it into
    its own object (``inplace.put_back``); else a copy of the object."""
    getstate = getattr(obj, "__getstate__", None)
    if not hasattr(obj, "__setstate__") and getstate is not None:
        try:
            state = getstate()
        except Exception:
            state = None
        if isinstance(state, dict) or (isinstance(state, tuple) and len(state) == 2
                                       and isinstance(state[0], (dict, type(None))) and isinstance(state[1], dict)):
            return "detached", type(obj), state
    return "custom", Forced(obj)


def _same(obj: Any) -> Any:
    return obj


class RefPickler(pickling.Pickler):
    """cloudpickle (code objects keeping their file names, see _pickling.py), but registered
    objects go as indices into ``table`` and cell functions get the kernel's globals."""

    def __init__(self, file: Any, registry: Registry, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol=5, buffer_callback=buffer_callback)
        self.registry, self.table, self.objects = registry, [], []
        self._paths = registry.paths
        self._index: dict[int, int] = {}
        self._forced: int | None = None

    def persistent_id(self, obj: Any) -> Any:  # called for every object pickled: keep it short
        key = id(obj)
        if key not in self._paths:
            return None
        if key == self._forced:
            self._forced = None  # once: further occurrences (a cycle) are the kernel's object
            return None
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.table)
            self.table.append((self._paths[key], type(obj).__qualname__))
            self.objects.append(obj)
        return index

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is Forced:
            self._forced = id(obj.obj)
            return _same, (obj.obj,)
        rebuild = _REBUILD.get(cls)
        if rebuild is not None:
            reduced = rebuild(obj)
            if reduced is not None:
                return reduced
        return super().reducer_override(obj)

    def _dynamic_function_reduce(self, func: types.FunctionType) -> Any:
        if func.__code__ is _DISPATCH_CODE:
            return _singledispatch, (func.registry[object], [(c, f) for c, f in func.registry.items()
                                                             if c is not object])
        if func.__globals__ is not self.registry.namespace:
            return super()._dynamic_function_reduce(func)
        closure = None if func.__closure__ is None else tuple(pickling.make_empty_cell() for _ in func.__closure__)
        state, slotstate = pickling.function_getstate(func)
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


def _lru_reduce(wrapper: Any) -> Any:
    wrapped = getattr(wrapper, "__wrapped__", None)
    if getattr(wrapped, "__module__", None) != "__main__" or not hasattr(wrapper, "cache_parameters"):
        return None  # a library's: it pickles by its importable name
    params = wrapper.cache_parameters()
    return _lru_cache, (wrapped, params["maxsize"], params["typed"], dict(vars(wrapper)))


def _lru_cache(func: Any, maxsize: Any, typed: bool, attrs: dict) -> Any:
    wrapper = functools.lru_cache(maxsize=maxsize, typed=typed)(func)
    vars(wrapper).update(attrs)
    return wrapper


def _singledispatch(default: Any, registered: list) -> Any:
    func = functools.singledispatch(default)
    for cls, impl in registered:
        func.register(cls, impl)
    return func


def _newtype_reduce(new_type: Any) -> Any:
    if getattr(new_type, "__module__", None) != "__main__":
        return None
    return _new_type, (new_type.__name__, new_type.__supertype__, new_type.__qualname__)


def _new_type(name: str, supertype: Any, qualname: str) -> Any:
    made = typing.NewType(name, supertype)
    made.__module__, made.__qualname__ = "__main__", qualname
    return made


def _cached_property_reduce(prop: Any) -> Any:
    if not hasattr(prop, "lock"):  # 3.12 on: no lock, it pickles as itself
        return None
    return _cached_property, (prop.func, prop.attrname, prop.__doc__)


def _cached_property(func: Any, attrname: str | None, doc: Any) -> Any:
    prop = functools.cached_property(func)
    prop.attrname, prop.__doc__ = attrname, doc
    return prop


def _weakref_reduce(ref: Any) -> Any:
    if type(ref) is not weakref.ReferenceType:
        return None
    return _weakref, (ref(), ref.__callback__)


def _weakref(target: Any, callback: Any) -> Any:
    """A weak reference to ``target`` (a kernel object, or one the pickle made): dead if it was."""
    if target is None:
        target = _Gone()
    return weakref.ref(target, callback)


class _Gone:
    """Stands for a weak reference's dead target: the reference made to it dies at once."""


_REBUILD: dict[type, Any] = {functools._lru_cache_wrapper: _lru_reduce, weakref.ReferenceType: _weakref_reduce,
                             functools.cached_property: _cached_property_reduce}
if isinstance(typing.NewType, type):  # 3.10 on; before, a NewType is a function and pickles by value
    _REBUILD[typing.NewType] = _newtype_reduce
_DISPATCH_CODE = functools.singledispatch(_same).__code__


class _Refs(list):
    """The registered objects a pickle refers to, and the registry they come from."""

    registry: Registry


def dumps(obj: Any, registry: Registry, buffers: list[pickle.PickleBuffer],
          also: Any = None) -> tuple[bytes, Table, list[Any]]:
    """``obj`` pickled, the table of the registered objects it refers to, and those objects. Buffers
    of 64 KiB and more are appended to ``buffers`` (out of band), and ``also`` sees each of them."""

    def keep(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND:
            return True
        buffers.append(buffer)
        if also is not None:
            also(buffer)
        return False

    file = io.BytesIO()
    pickler = RefPickler(file, registry, buffer_callback=keep)
    pickler.dump(obj)
    objects = _Refs(pickler.objects)
    objects.registry = registry
    return file.getvalue(), pickler.table, objects


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, buffers: Any, objects: list[Any], registry: Registry | None) -> None:
        super().__init__(file, buffers=buffers)
        self._objects, self._registry = objects, registry

    def persistent_load(self, pid: Any) -> Any:
        return self._objects[pid]

    def find_class(self, module: str, name: str) -> Any:
        registry = self._registry
        if module == "__main__" and registry is not None:  # the child's check: as the kernel would
            head = name.partition(".")[0]
            found = registry.namespace.get(head, _NOT_THERE)
            if registry.paths.get(id(found)) != (head,):
                raise pickle.UnpicklingError(f"it refers by name to {head!r}, which the kernel does not have "
                                             "before this cell ends")
        return super().find_class(module, name)


_NOT_THERE = object()


def loads(data: Any, namespace: dict[str, Any], buffers: list[Any], table: Table,
          objects: list[Any] | None = None) -> Any:
    """Unpickle: ``table``'s paths resolve in ``namespace`` (unless the ``objects`` are given: a check
    in the child), and new functions are bound to ``namespace``."""
    global _target
    if objects is None:
        cache: dict[Any, Any] = {}
        objects = []
        for path, type_name in table:
            obj = resolve(namespace, path, cache)
            if type(obj).__qualname__ != type_name:  # the graph is not the one the child saw
                raise pickle.UnpicklingError(f"{describe(path)} is a {type(obj).__qualname__}, not a {type_name}")
            objects.append(obj)
    _target = namespace
    try:
        return _Unpickler(io.BytesIO(data), buffers, objects, getattr(objects, "registry", None)).load()
    finally:
        _target = {}


def digest(registry: Registry, obj: Any) -> bytes | None:
    """A digest of ``obj``'s pickle, the registered objects it holds counting as references (their
    own changes are theirs); None if it cannot be pickled."""
    hasher = hashlib.blake2b(digest_size=16)
    try:
        data, table, _ = dumps(Forced(obj), registry, [], lambda b: hasher.update(b.raw()))
        hasher.update(data)
        hasher.update(repr(table).encode())
    except Exception:
        return None
    return hasher.digest()
