"""What a fork cell changed, and how it is put into the kernel as if the cell had run there.

Before the body the child registers the objects the cell can reach (refs.py) and fingerprints
their contents (state.py), and notes process state (procstate.py). Afterwards it sends, in one
pickle: names that are new or rebound, the new contents of objects changed in place, and the cell's
value. Objects that existed before travel as paths, so the kernel gets its own objects back; one
pickle keeps sharing between new objects (``b = a``). Whatever does not pickle, or would not
unpickle, is left out on its own and named in the cell's one warning line.
"""

from __future__ import annotations

import pickle
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from . import refpickle, refs, stays
from .inplace import base, merge, moved_on, put_back
from .procstate import ProcessChanges, ProcessState
from .protocol import Packed
from .refpickle import Forced
from .refs import RUNS_TEXT, Registry, code_names, describe
from .state import current, deep_digest, fingerprint, patch

# IPython's own bookkeeping (_, _i3, _3, In, Out ...) is never synced.
_HISTORY = re.compile(r"^_{1,3}$|^_i{1,3}$|^_i?\d+$|^_(oh|ih|dh)$")
VALUE = "the cell's value"


def reachable_names(codes: Iterable[types.CodeType | None], namespace: dict[str, Any]) -> set[str]:
    """Global names the cell's own code can touch; all names when it can run code it was given as
    text (a magic, a nested cell, ``exec``). The walk (refs.py) adds the names read by the
    functions it meets below these."""
    seen: set[int] = set()
    found = set().union(*(code_names(c, seen) for c in codes if c is not None))
    if found & RUNS_TEXT:
        return set(namespace)
    return found & set(namespace)


def user_names(namespace: dict[str, Any], hidden: set[str]) -> list[str]:
    return [n for n in namespace if n not in hidden and not _HISTORY.match(n)]


@dataclass
class Changes:
    """What the child sends back for a cell (``Envelope.sync``)."""

    payload: Packed | None = None  # [(kind, key, object)], kind "name", "mutated" or "value"
    deleted: list[str] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)  # what could not travel -> why
    identity_lost: list[str] = field(default_factory=list)
    process: ProcessChanges = field(default_factory=ProcessChanges)
    bases: dict[Any, tuple[int, Any]] = field(default_factory=dict)  # path -> (child's id, inplace.base)


@dataclass
class Snapshot:
    """The namespace as the child found it."""

    registry: Registry
    ids: dict[str, int]
    prints: dict[int, Any]
    process: ProcessState
    deep: dict[str, bytes | None] = field(default_factory=dict)  # roots too big to walk: whole digests

    @classmethod
    def take(cls, namespace: dict[str, Any], hidden: set[str], codes: Iterable[Any], shell: Any,
             kernel_random: Any) -> Snapshot:
        names = user_names(namespace, hidden)
        registry = Registry(namespace)
        registry.walk(names, reachable_names(codes, namespace) & set(names))
        prints = {}
        for key in registry.expanded:
            try:
                prints[key] = fingerprint(registry.objects[key], digest=partial(refpickle.digest, registry))
            except Exception:  # an object that cannot even be looked at: not watched
                continue
        deep = {name: deep_digest(namespace[name]) for name in registry.truncated}
        return cls(registry, {n: id(namespace[n]) for n in names}, prints,
                   ProcessState.take(shell, kernel_random), deep)

    def changes(self, namespace: dict[str, Any], hidden: set[str], shell: Any,
                value: Any = None, has_value: bool = False) -> Changes:
        """Everything the cell changed, packed for the kernel."""
        out = Changes(process=self.process.changes(shell))
        entries: list[tuple[str, Any, Any]] = []
        for name in user_names(namespace, hidden):
            obj = namespace[name]
            if self.ids.get(name) != id(obj):
                entries.append(("name", name, obj))  # new or rebound (perhaps to an older object)
            elif name in self.deep and deep_digest(obj) != self.deep[name]:
                entries.append(("name", name, Forced(obj)))  # too big to walk: sent whole, a copy
                out.identity_lost.append(name)
        for key, before in self.prints.items():
            if before is not None and self._changed(key, before):
                path = self.registry.paths[key]
                try:
                    obj = self.registry.objects[key]
                    entries.append(("mutated", path, patch(obj, before) or current(obj)))
                    out.bases[path] = (key, base(before, obj))
                except Exception as err:
                    out.lost[describe(path)] = f"{type(err).__name__}: {err}"[:300]
        if has_value:
            entries.append(("value", VALUE, value))
        out.deleted = sorted(n for n in self.ids if n not in namespace)
        out.payload = self._pack(entries, out.lost, namespace)
        return out

    @property
    def _digest(self) -> Any:
        return partial(refpickle.digest, self.registry)

    def _changed(self, key: int, before: Any = None) -> bool:
        before = self.prints.get(key) if before is None else before
        try:
            after = fingerprint(self.registry.objects[key], before=False, digest=self._digest)
            return before != after
        except Exception:
            return True

    def _pack(self, entries: list[tuple[str, Any, Any]], lost: dict[str, str],
              namespace: dict[str, Any]) -> Packed | None:
        """One pickle of all entries, proven to unpickle; entries that fail are left out, named."""
        try:
            return self._packed(entries, namespace)
        except Exception:
            pass
        good = []
        for entry in entries:
            try:
                self._packed([entry], namespace)
            except Exception as err:
                obj = _unwrap(entry[2])
                # a changed object's state names its class: ("object", cls, ...)
                shown = obj[1] if isinstance(obj, tuple) and len(obj) > 1 and isinstance(obj[1], type) else type(obj)
                lost[_label(entry)] = f"{stays.class_name(shown)}: {stays.reason(obj, err)}"
            else:
                good.append(entry)
        try:
            return self._packed(good, namespace)
        except Exception as err:
            for entry in good:
                lost[_label(entry)] = f"{type(err).__name__}: {err}"[:300]
            return None

    def _packed(self, entries: list[tuple[str, Any, Any]], namespace: dict[str, Any]) -> Packed:
        buffers: list[pickle.PickleBuffer] = []
        data, table, objects = refpickle.dumps(entries, self.registry, buffers)
        # Unpickled here too, with the child's objects: what would fail in the kernel fails now.
        refpickle.loads(data, namespace, [b.raw() for b in buffers], table, objects)
        return Packed(data, buffers, table=table)


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, tuple) and obj and isinstance(obj[-1], Forced):
        return obj[-1].obj
    return obj.obj if isinstance(obj, Forced) else obj


def _label(entry: tuple[str, Any, Any]) -> str:
    kind, key, _ = entry
    return describe(key) if kind == "mutated" else key


def apply(changes: Changes, namespace: dict[str, Any]) -> tuple[Any, bool, list[str]]:
    """Put the cell's changes into the kernel: (value, whether it came, the warning's parts, one per
    top-level name)."""
    problems = changes.process.apply(namespace)
    entries: list[tuple[str, Any, Any]] = []
    if changes.payload is not None:
        try:
            table = changes.payload.table
            entries = changes.payload.load(lambda data, buffers: refpickle.loads(data, namespace, buffers, table))
        except Exception as err:  # only what differs between child and kernel can get here
            problems.append(f"every change of the cell ({type(err).__name__}: {err})")
    lost: dict[str, str] = {}  # one entry per top-level name: the first reason found
    for label, why in changes.lost.items():
        if label != VALUE:
            lost.setdefault(stays.short(label), why)
    identity = list(dict.fromkeys(stays.short(n) for n in changes.identity_lost))
    # Every object is found before anything changes: by its path, checked by identity (ids are the
    # child's, which are the kernel's: it was forked), and looked for by identity when a kernel
    # thread moved it during the cell.
    targets, cache = [], {}
    for kind, key, obj in entries:
        if kind == "mutated":
            expected, summary = changes.bases.get(key, (None, None))
            try:
                targets.append((key, _find(namespace, key, expected, cache), obj, summary))
            except Exception as err:
                lost.setdefault(key[0], f"{type(err).__name__}: {err}")
    changed_paths = {path for path, *_ in targets}
    for path, old, state, summary in targets:
        if moved_on(old, summary):  # the kernel changed it too, during the cell
            if not merge(old, state, summary):
                lost.setdefault(path[0], "changed in the kernel during the cell too: the kernel's is kept")
            continue
        try:
            in_place, new = put_back(old, state)
        except Exception as err:
            in_place, new = False, _unwrap(state)
            lost.setdefault(path[0], f"{type(err).__name__}: {err}")
        if not in_place:
            if len(path) > 1 and path[:-1] in changed_paths:
                continue  # its holder changed too, and holds the new one now (an itertools.count)
            names = [n for n, v in namespace.items() if v is old and not _HISTORY.match(n)]
            for name in names:
                namespace[name] = new
            identity += [n for n in names or [path[0]] if n not in identity]
    value, has_value = None, False
    for kind, key, obj in entries:
        if kind == "name":
            namespace[key] = obj
        elif kind == "value":
            value, has_value = obj, True
    for name in changes.deleted:
        namespace.pop(name, None)
    changes.process.apply_random()
    problems += [stays.entry(name, why) for name, why in lost.items()]
    if identity:
        problems.append(f"identity lost for: {', '.join(identity)}")
    problems += changes.process.lost
    return value, has_value, problems


def _find(namespace: dict[str, Any], path: Any, expected: int | None, cache: dict) -> Any:
    """The kernel's object at ``path``; if that is not the object the child saw (a kernel thread
    changed the graph), the one of that identity below the same name."""
    try:
        obj = refs.resolve(namespace, path, cache)
    except Exception:
        obj = None
    if expected is None or id(obj) == expected:
        return obj
    registry = refs.Registry(namespace)
    registry.walk([path[0]], {path[0]})
    if expected in registry.objects:
        return registry.objects[expected]
    raise LookupError(f"{describe(path)} is no longer in the kernel")
