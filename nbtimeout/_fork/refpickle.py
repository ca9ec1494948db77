"""Pickling a fork cell's changes so that objects the kernel already has travel as references.

Objects in the Registry (refs.py) are pickled as a small integer, an index into a table of paths
that travels beside the pickle; the kernel resolves only the paths used. Functions made in the
cell are rebuilt with the kernel's namespace as their globals (cloudpickle would give each its own
dict), so they see names defined later and ``global x`` in them writes the kernel's ``x``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
from typing import Any

import cloudpickle
from cloudpickle.cloudpickle import _make_empty_cell

try:
    from cloudpickle.cloudpickle import _function_getstate
except ImportError:  # cloudpickle 2.x keeps its Pickler's helpers in cloudpickle_fast (3.0 merged them)
    from cloudpickle.cloudpickle_fast import _function_getstate

from .protocol import OUT_OF_BAND
from .refs import Path, Registry, describe, resolve

Table = list[tuple[Path, str]]  # (path, type name) of each object referenced


class Forced:
    """Pickle ``obj`` by value here even though it existed before the cell (its new state)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj


def _same(obj: Any) -> Any:
    return obj


class RefPickler(cloudpickle.Pickler):
    """cloudpickle, but registered objects go as indices into ``table`` and cell functions get the
    kernel's globals."""

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
    return file.getvalue(), pickler.table, pickler.objects


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, buffers: Any, objects: list[Any]) -> None:
        super().__init__(file, buffers=buffers)
        self._objects = objects

    def persistent_load(self, pid: Any) -> Any:
        return self._objects[pid]


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
        return _Unpickler(io.BytesIO(data), buffers, objects).load()
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
