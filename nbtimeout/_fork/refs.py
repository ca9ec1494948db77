"""Objects that existed before a fork cell travel back by reference, not as copies.

Before the body the child walks the objects the cell can reach and gives each a *path* from a
name (``cfg``, then the 2nd value, then attribute ``x``). Fork keeps the kernel's graph exactly as
the child found it, so the kernel resolves the same path to the very same object: ``c is
Color.RED``, ``isinstance(q, Q)`` and ``lst[0] is A`` hold. Pickling with paths: refpickle.py.
"""

from __future__ import annotations

import types
from collections import deque
from typing import Any

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


def children(obj: Any, namespace: dict[str, Any]) -> list[tuple[Any, Step]]:
    """The objects directly below ``obj`` (values, not atoms) with the step that reaches each.

    A dict value's step carries its key when the key is an atom, for naming it in messages.
    """
    cls = type(obj)
    if cls is list or cls is tuple:  # the common case first, and fast
        return [(item, ("i", n)) for n, item in enumerate(obj) if type(item) not in ATOMS]
    if cls is dict:
        return _dict_children(obj)
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
    if kind == "x":
        return obj.cell_contents
    return {"D": lambda: obj.__defaults__, "W": lambda: obj.__kwdefaults__, "m": lambda: obj.__self__,
            "f": lambda: obj.__func__}[kind]()


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
                 "f": lambda a: ".__func__"}[kind](args)
    return text
