"""Objects that existed before a fork cell travel back by reference, not as copies.

Before the body the child walks the objects the cell can reach and gives each a *path* from a
name (``cfg``, then the 2nd value, then attribute ``x``). Fork keeps the kernel's graph exactly as
the child found it, so the kernel resolves the same path to the very same object: ``c is
Color.RED``, ``isinstance(q, Q)`` and ``lst[0] is A`` hold. Pickling with paths: refpickle.py.
"""

from __future__ import annotations

import functools
import gc
import types
from collections import deque
from typing import Any

from .kinds import ATOMS, is_leaf, numpy_array, pandas_kind

# Walking stops after this many objects: a namespace of millions of small objects would cost more
# than it saves. Roots cut short are compared deeply instead (see sync.py).
LIMIT = 200_000

# Names through which code runs code it holds as text, whose names no code object shows.
RUNS_TEXT = frozenset({"get_ipython", "exec", "eval", "globals", "vars", "locals", "__import__"})

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
        self.deep: set[str] = set()
        self._names: set[str] = set()
        self._pending: list[str] = []

    def add(self, obj: Any, path: Path) -> None:
        if id(obj) not in self.paths:
            self.paths[id(obj)] = path
            self.objects[id(obj)] = obj

    def walk(self, names: list[str], deep: set[str]) -> None:
        """Register every name's object, and everything below the ``deep`` ones (``expanded``:
        the objects whose contents are watched; leaves such as arrays are watched, not walked).

        A function of the notebook met below a deep name (bound to it, wrapped by a decorator, in
        a dict of handlers, a partial, a method of an object in a list ...) can be called by the
        cell: the global names its code reads become deep too (``deep`` ends as all of them).
        """
        self._names = set(names)
        for name in names:
            self.add(self.namespace[name], (name,))
        self._pending = [n for n in names if n in deep]
        self.deep = set(self._pending)
        while self._pending:
            name = self._pending.pop()
            self._expand(self.namespace[name], (name,), name)
        if self.truncated:  # what was seen but not watched travels as a copy: its changes arrive
            for key in [k for k, p in self.paths.items() if len(p) > 1 and k not in self.expanded]:
                del self.paths[key], self.objects[key]
            # A name's object still goes by reference (``first = records[0]`` inside a root sent
            # whole): its own contents must be watched then, or the copy would point at the old.
            self.expanded.update(k for k, p in self.paths.items() if len(p) == 1)

    def _expand(self, root: Any, path: Path, name: str) -> None:
        paths, objects, expanded, namespace = self.paths, self.objects, self.expanded, self.namespace
        todo = [(root, path)]
        while todo:
            obj, path = todo.pop()
            if id(obj) in expanded:
                continue
            if len(expanded) >= LIMIT:
                self.truncated.add(name)
                return
            expanded.add(id(obj))
            if type(obj) is types.FunctionType and obj.__globals__ is namespace:
                self._reach(obj.__code__)
            try:
                below = children(obj, namespace)
            except Exception:  # an object that will not be looked into (a proxy, a broken __slots__)
                continue
            for child, step in below:
                key = id(child)
                if key not in paths:
                    paths[key] = child_path = (*path, step)
                    objects[key] = child
                    todo.append((child, child_path))
                elif key not in expanded:
                    todo.append((child, paths[key]))

    def _reach(self, code: types.CodeType) -> None:
        names = code_names(code)
        if names & RUNS_TEXT:  # it can touch anything
            names = self._names
        for name in names:
            if name in self._names and name not in self.deep:
                self.deep.add(name)
                self._pending.append(name)


def code_names(code: types.CodeType, seen: set[int] | None = None) -> set[str]:
    """Every global (or attribute) name ``code`` and the code nested in it mention."""
    seen = set() if seen is None else seen
    if id(code) in seen:
        return set()
    seen.add(id(code))
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const, seen)
    return names


def children(obj: Any, namespace: dict[str, Any]) -> list[tuple[Any, Step]]:
    """The objects directly below ``obj`` (values, not atoms) with the step that reaches each.

    A dict value's step carries its key when the key is an atom, for naming it in messages.
    """
    cls = type(obj)
    if cls is list or cls is tuple:  # the common case first, and fast
        if _only_atoms(obj):
            return []
        return [(item, ("i", n)) for n, item in enumerate(obj) if type(item) not in ATOMS]
    if cls is dict:
        if _only_atoms(obj.values()) and _only_atoms(obj.keys()):
            return []
        return _dict_children(obj)
    if cls is memoryview:  # a write through the view changes the object it views
        try:
            viewed = obj.obj
        except ValueError:  # released
            return []
        return [] if viewed is None or type(viewed) in ATOMS else [(viewed, ("o",))]
    if numpy_array(obj):
        return _array_children(obj)
    if pandas_kind(obj) == "frame":
        return _frame_children(obj)
    if is_leaf(obj):
        return []
    return [(child, step) for child, step in _other_children(obj, namespace) if type(child) not in ATOMS]


# The kernel's own machinery, met through user objects (a Thread's ``_stderr`` is the kernel's
# stream, which leads to the shell): not the user's data. What a cell changes in there (a nested
# magic's caches) must not travel back, and walking it costs and reaches what cannot be pickled.
_RUNTIME = ("IPython.", "ipykernel.", "jupyter_client.", "zmq.", "tornado.", "traitlets.", "nbtimeout.",
            "comm.")


def _other_children(obj: Any, namespace: dict[str, Any]) -> list[tuple[Any, Step]]:
    out: list[tuple[Any, Step]] = []
    if type(obj).__module__.startswith(_RUNTIME):
        return out
    if isinstance(obj, (list, tuple, deque)):
        out += [(item, ("i", n)) for n, item in enumerate(obj)]
    elif isinstance(obj, dict):
        out += _dict_children(obj)
    elif isinstance(obj, (set, frozenset)):
        out += [(item, ("s", n)) for n, item in enumerate(obj)]
    elif isinstance(obj, type):
        if obj.__module__ == "__main__":  # library classes travel by name anyway
            out += [(v, ("a", k)) for k, v in vars(obj).items() if k not in ("__dict__", "__weakref__")]
            out += [(base, ("b", n)) for n, base in enumerate(obj.__bases__)]
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
    _referents(obj, out)
    return out


def _only_atoms(items: Any) -> bool:
    """Whether a container holds atoms only, asked at C speed (a list of 20M strings has no
    children, and a loop in Python over them costs a second)."""
    return len(items) > 64 and set(map(type, items)) <= ATOMS


# Object arrays this big are looked into only when a sample of them holds more than atoms
# (an object column of strings is common and large; one of lists usually holds nothing else).
_SAMPLE = 10_000


def _array_children(arr: Any) -> list[tuple[Any, Step]]:
    """The objects in an object array (``oa[0].append(1)``) and the arrays a subclass keeps in its
    ``__dict__`` (a masked array's mask)."""
    out: list[tuple[Any, Step]] = []
    attrs = getattr(arr, "__dict__", None)
    if type(attrs) is dict:
        out += [(v, ("a", k)) for k, v in attrs.items() if numpy_array(v)]
    if arr.dtype.hasobject and arr.dtype.kind == "O":
        flat = arr.ravel()
        if flat.size > _SAMPLE and set(map(type, flat[:_SAMPLE].tolist())) <= ATOMS:
            return out
        out += [(item, ("e", n)) for n, item in enumerate(flat.tolist()) if type(item) not in ATOMS]
    return out


def _frame_children(frame: Any) -> list[tuple[Any, Step]]:
    """The object blocks of a DataFrame or Series: their items may be changed in place."""
    return [(block.values, ("v", n)) for n, block in enumerate(frame._mgr.blocks)
            if numpy_array(block.values) and block.values.dtype.kind == "O"]


def _referents(obj: Any, out: list[tuple[Any, Step]]) -> None:
    """What a C object holds (a partial's function, a property's fget, a csv writer's file): a
    change made through it is a change of what it holds."""
    if isinstance(obj, _OPAQUE_INSIDE):
        return
    attrs, cls = getattr(obj, "__dict__", None), type(obj)
    known = {id(child) for child, _ in out}
    for n, child in enumerate(gc.get_referents(obj)):
        if child is not attrs and child is not cls and id(child) not in known and type(child) not in ATOMS:
            out.append((child, ("g", n)))


# Their referents are the interpreter's (frames, code, modules), not data the cell can change by
# calling something; an lru_cache's entries are its own (the function it wraps is its __wrapped__).
_OPAQUE_INSIDE = (types.FrameType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType,
                  types.CodeType, types.ModuleType, type, functools._lru_cache_wrapper)


def _dict_children(obj: dict) -> list[tuple[Any, Step]]:
    out = []
    for n, (key, value) in enumerate(obj.items()):
        atom = type(key) in ATOMS
        if not atom:
            out.append((key, ("K", n)))
        if type(value) not in ATOMS:
            out.append((value, ("k", n, key) if atom else ("k", n)))
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


def resolve(namespace: dict[str, Any], path: Path, cache: dict[Any, Any] | None = None) -> Any:
    """The object ``path`` names in ``namespace`` (the kernel's, as the child found it).

    ``cache`` (one per unpickling) remembers resolved paths and the listed items of dicts and sets,
    so a changed dict of n old values costs n steps, not n**2.
    """
    cache = {} if cache is None else cache
    found = cache.get(path, _MISSING)
    if found is not _MISSING:
        return found
    start = len(path) - 1  # the parent is usually known already: siblings share it
    if start > 0 and path[:start] in cache:
        obj = cache[path[:start]]
    else:
        start, obj = 1, namespace[path[0]]
        cache[path[:1]] = obj
    for i in range(start, len(path)):
        obj = _step(obj, path[i], cache)
        cache[path[:i + 1]] = obj
    return obj


def _listed(obj: Any, kind: str, cache: dict[Any, Any]) -> list[Any]:
    key = ("listed", id(obj), kind)
    if key not in cache:
        cache[key] = list(obj.values() if kind == "k" else obj.keys() if kind == "K" else obj)
    return cache[key]


def _step(obj: Any, step: Step, cache: dict[Any, Any]) -> Any:
    kind, *args = step
    if kind == "i":
        return obj[args[0]]
    if kind in ("k", "K", "s"):
        return _listed(obj, kind, cache)[args[0]]
    if kind == "a":
        return vars(obj)[args[0]]
    if kind == "l":
        return getattr(obj, args[0])
    if kind == "t":
        return type(obj)
    if kind == "c":
        return obj.__closure__[args[0]]
    if kind == "g":
        return gc.get_referents(obj)[args[0]]
    if kind == "e":
        return obj.ravel()[args[0]]
    if kind == "v":
        return obj._mgr.blocks[args[0]].values
    if kind == "b":
        return obj.__bases__[args[0]]
    if kind == "x":
        return obj.cell_contents
    return {"o": lambda: obj.obj, "D": lambda: obj.__defaults__, "W": lambda: obj.__kwdefaults__,
            "m": lambda: obj.__self__, "f": lambda: obj.__func__}[kind]()


_MISSING = object()


def describe(path: Path) -> str:
    """``cfg['arr']``, ``obj.x``: how a user would name the object at ``path``."""
    text = str(path[0])
    for kind, *args in path[1:]:
        text += {"i": lambda a: f"[{a[0]}]", "k": lambda a: f"[{a[1]!r}]" if len(a) > 1 else "[…]",
                 "K": lambda a: ".keys()[…]",
                 "s": lambda a: "{…}", "a": lambda a: f".{a[0]}", "l": lambda a: f".{a[0]}",
                 "t": lambda a: ".__class__", "c": lambda a: f".__closure__[{a[0]}]",
                 "x": lambda a: ".cell_contents", "D": lambda a: ".__defaults__",
                 "W": lambda a: ".__kwdefaults__", "m": lambda a: ".__self__",
                 "f": lambda a: ".__func__", "g": lambda a: f".<held {a[0]}>", "e": lambda a: f".flat[{a[0]}]",
                 "v": lambda a: f".<block {a[0]}>", "b": lambda a: f".__bases__[{a[0]}]",
                 "o": lambda a: ".obj"}[kind](args)
    return text
