"""What kind of object something is, for walking, watching and updating it in place.

numpy and pandas are recognised only when the kernel has already imported them: a namespace
without them never pays for the import.
"""

from __future__ import annotations

import array
import sys
import types
from collections import deque
from typing import Any

# Immutable values whose identity never matters: compared by value, never walked or referenced.
ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), range, slice,
                   type(Ellipsis), type(NotImplemented)})


def numpy_array(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def pandas_kind(obj: Any) -> str | None:
    """``"frame"`` (DataFrame, Series), ``"index"`` or ``"extension"`` for pandas objects, else None."""
    if not type(obj).__module__.startswith("pandas"):
        return None
    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return "frame"
    if isinstance(obj, pd.Index):
        return "index"
    if isinstance(obj, pd.api.extensions.ExtensionArray):
        return "extension"
    return None


def is_leaf(obj: Any) -> bool:
    """Watched as a whole (buffers, managers), never walked into."""
    return (isinstance(obj, (types.ModuleType, bytearray, array.array, memoryview))
            or numpy_array(obj) or pandas_kind(obj) is not None)


def kind(obj: Any) -> str:
    """How a pre-existing object's contents are watched and put back in place."""
    if isinstance(obj, (list, deque)):
        return "seq"
    if isinstance(obj, dict):
        return "map"
    if isinstance(obj, set):
        return "set"
    if isinstance(obj, (bytearray, array.array)):
        return "buffer"
    if numpy_array(obj):
        return "array"
    pandas = pandas_kind(obj)
    if pandas is not None:
        return pandas
    if isinstance(obj, (tuple, frozenset, types.ModuleType, memoryview, types.BuiltinFunctionType)):
        return "fixed"
    if isinstance(obj, type):
        return "class"
    if isinstance(obj, types.FunctionType):
        return "function"
    if isinstance(obj, types.CellType):
        return "cell"
    if isinstance(obj, (types.GeneratorType, types.CoroutineType)):
        return "generator"
    if rng_state_holder(obj) is not None:
        return "rng"
    if isinstance(getattr(obj, "__dict__", None), dict) or _has_slots(type(obj)):
        return "object"
    return "opaque"


def rng_state_holder(obj: Any) -> Any:
    """numpy's ``Generator`` keeps its state in its bit generator's ``state`` property; a bit
    generator in its own. None for anything else."""
    np_random = sys.modules.get("numpy.random")
    if np_random is None:
        return None
    if isinstance(obj, np_random.Generator):
        return obj.bit_generator
    if isinstance(obj, np_random.BitGenerator):
        return obj
    return None


def _has_slots(cls: type) -> bool:
    return any("__slots__" in vars(base) for base in cls.__mro__[:-1])
