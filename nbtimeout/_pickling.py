"""cloudpickle, with every code object keeping its file name on the way.

cloudpickle 3.1.3 writes ``co_filename = "<dynamic-code>"`` into each code object it pickles by
value (for payloads that do not depend on where a function was defined). A notebook function's
file name is what ties it to its cell: with it renamed, a stopped map task's ``where``, the frames
of an error raised in a fork child from a cell's class, and ``%debug`` on them no longer name the
cell nor find its source. Here each code object travels as cloudpickle reduces it *and* its own file
name, and gets that name back when it is loaded, whatever the cloudpickle in use does to it.
Every pickle nbtimeout sends to another process is made here (or by a subclass of ``Pickler``);
loading needs only ``pickle.loads`` where nbtimeout is importable.
"""

from __future__ import annotations

import importlib
import io
import types
from collections import ChainMap
from collections.abc import Callable
from typing import Any, ClassVar

import cloudpickle


# cloudpickle's private helpers that refpickle.py rebuilds kernel functions with: in
# cloudpickle.cloudpickle from 3.0, in cloudpickle.cloudpickle_fast before.
def _private(name: str) -> Any:
    for module_name in ("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast"):
        found = getattr(importlib.import_module(module_name), name, None)
        if found is not None:
            return found
    raise ImportError(f"nbtimeout needs cloudpickle's {name}, which cloudpickle {cloudpickle.__version__} lacks")


function_getstate = _private("_function_getstate")
make_empty_cell = _private("_make_empty_cell")


def _cloudpickle_code_reduce(code: types.CodeType) -> tuple[Any, ...]:
    # Looked up on each call: what cloudpickle (or a test standing in for a future one) does now.
    return cloudpickle.Pickler.dispatch_table[types.CodeType](code)


def _code_reduce(code: types.CodeType) -> tuple[Any, ...]:
    rebuild, args, *rest = _cloudpickle_code_reduce(code)
    if rest:  # a reducer with state: not one this module knows how to wrap, so it goes as it is
        return (rebuild, args, *rest)
    return _named_code, (rebuild, args, code.co_filename)


def _named_code(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str) -> types.CodeType:
    """The code object ``rebuild(*args)`` makes, named ``filename`` (its nested code objects were
    loaded through here too, so they are named already)."""
    code = rebuild(*args)
    return code if code.co_filename == filename else code.replace(co_filename=filename)


class Pickler(cloudpickle.Pickler):
    """cloudpickle's Pickler; code objects keep their ``co_filename``."""

    # cloudpickle's reducer_override leaves code objects to the dispatch table (every version from
    # 2.2 on), so an entry in front of its own ones sees each of them, nested ones included. Its
    # maps are chained here themselves (live, one level): every object's lookup goes through this.
    dispatch_table: ClassVar[ChainMap] = ChainMap({types.CodeType: _code_reduce},
                                                  *getattr(cloudpickle.Pickler.dispatch_table, "maps",
                                                           [cloudpickle.Pickler.dispatch_table]))


def dumps(obj: Any, protocol: int = 5, buffer_callback: Callable[[Any], Any] | None = None) -> bytes:
    """``cloudpickle.dumps(obj)``, code objects keeping their file names; raises what pickling raises."""
    file = io.BytesIO()
    Pickler(file, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
    return file.getvalue()
