"""Which names a fork cell changed, and how they travel back to the kernel.

Before the body runs the child notes the identity of every name, and fingerprints the objects the
cell can reach by name (its own code and the functions it calls). Afterwards it sends the names
that are new, rebound or whose fingerprint changed, plus the deleted ones; a large object the cell
only read is fingerprinted in the child but never copied back.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .protocol import Envelope

# IPython's own bookkeeping (_, _i3, _3, In, Out ...) is never synced.
_HISTORY = re.compile(r"^_{1,3}$|^_i{1,3}$|^_i?\d+$|^_(oh|ih|dh)$")


def _code_names(code: types.CodeType, seen: set[int]) -> set[str]:
    if id(code) in seen:
        return set()
    seen.add(id(code))
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const, seen)
    return names


def reachable_names(codes: Iterable[types.CodeType | None], namespace: dict[str, Any]) -> set[str]:
    """Global names the code can touch, following functions of ``namespace`` it calls."""
    seen: set[int] = set()
    todo = set().union(*(_code_names(c, seen) for c in codes if c is not None))
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in found or name not in namespace:
            continue
        found.add(name)
        value = namespace[name]
        code = getattr(value, "__code__", None)
        if isinstance(code, types.CodeType) and getattr(value, "__globals__", None) is namespace:
            todo |= _code_names(code, seen)
    return found


def fingerprint(value: Any) -> bytes | None:
    """A digest of the pickled object, or None when it cannot be pickled."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        digest.update(cloudpickle.dumps(value, protocol=5,
                                        buffer_callback=lambda b: digest.update(b.raw()) and False))
    except Exception:
        return None
    return digest.digest()


@dataclass
class Snapshot:
    """The namespace as the child found it."""

    ids: dict[str, int]
    prints: dict[str, bytes | None]

    @classmethod
    def take(cls, namespace: dict[str, Any], hidden: set[str], codes: Iterable[Any]) -> Snapshot:
        names = {n for n in namespace if n not in hidden and not _HISTORY.match(n)}
        watched = reachable_names(codes, namespace) & names
        watched = {n for n in watched if not isinstance(namespace[n], (types.ModuleType, types.FunctionType))}
        return cls({n: id(namespace[n]) for n in names}, {n: fingerprint(namespace[n]) for n in watched})

    def changes(self, namespace: dict[str, Any], hidden: set[str]) -> Envelope:
        """An envelope with the changed, aliased and deleted names of ``namespace``."""
        envelope = Envelope()
        before_by_id = {i: n for n, i in self.ids.items()}
        changed = set()
        for name, value in namespace.items():
            if name in hidden or _HISTORY.match(name):
                continue
            rebound = self.ids.get(name) != id(value)
            if rebound or (self.prints.get(name) is not None and fingerprint(value) != self.prints[name]):
                changed.add(name)  # new, rebound, or mutated in place
        rebound = {n for n in changed if self.ids.get(n) != id(namespace[n])}
        for name in changed:
            value = namespace[name]
            origin = before_by_id.get(id(value))
            # ``b = a`` (b rebound to an object a already held): keep the identity in the kernel.
            # A name mutated in place is never an alias, even when another name shares its object.
            if (name in rebound and origin is not None and origin not in rebound
                    and namespace.get(origin) is value):
                envelope.aliases[name] = origin
            else:
                envelope.changed[name] = value
        envelope.deleted = sorted(n for n in self.ids if n not in namespace)
        return envelope


def apply(envelope: Envelope, namespace: dict[str, Any], previous: dict[str, Any]) -> None:
    """Put the child's changes into the kernel's ``namespace``.

    A name whose object changed in place is rebound, and so is every other name that pointed to
    the same object, so ``alias = results`` still sees the new contents.
    """
    for name, value in envelope.changed.items():
        old = previous.get(name, _MISSING)
        namespace[name] = value
        if old is not _MISSING:
            for other, bound in list(namespace.items()):
                if bound is old and other not in envelope.changed and not _HISTORY.match(other):
                    namespace[other] = value
    for name, origin in envelope.aliases.items():
        namespace[name] = namespace[origin]
    for name in envelope.deleted:
        namespace.pop(name, None)


_MISSING = object()
