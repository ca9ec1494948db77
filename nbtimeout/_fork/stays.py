"""What stays in a fork child, and how the cell's one warning line names it.

Objects whose state lives in C where neither pickling nor a fingerprint can see it (connections,
cursors, hash and compressor objects, futures, generators) cannot come back. The rule: an object
the walk registered whose fingerprint is that of an unpicklable opaque object, or a generator, is
*held in C*. Where a cheap probe shows its state (a hash's digest, a future's state, a generator's
position) it is named when the probe changed; otherwise, when it is bound to a name the cell's code
mentions, as something that may have changed (the cell may only have read it).
Each entry of the warning is one top-level name.
"""

from __future__ import annotations

from typing import Any

from .refs import Path, Registry

STAY = "changes made in a fork cell stay in the child; run this cell with -m signal"
MAY = "may have changed: " + STAY
PROCESS = "the process it started was stopped with the fork child; run this cell with -m signal"
TEMPORARY = "its file was closed and deleted with the fork child; run this cell with -m signal"
_WORDED = frozenset({STAY, MAY, PROCESS, TEMPORARY})


def _probe(obj: Any) -> Any:
    """What can be seen of a C object's state, or None."""
    frame = getattr(obj, "gi_frame", None) or getattr(obj, "cr_frame", None)
    if hasattr(obj, "gi_frame") or hasattr(obj, "cr_frame"):
        return ("at", None if frame is None else frame.f_lasti)
    if hasattr(obj, "hexdigest") and hasattr(obj, "copy"):  # hashlib, hmac: digest() does not finish it
        try:
            return ("digest", obj.digest() if type(obj).__name__ != "SHAKE" else obj.digest(64))
        except Exception:
            return None
    if hasattr(obj, "done") and hasattr(obj, "cancelled") and hasattr(obj, "add_done_callback"):
        return ("future", obj.done(), obj.cancelled())
    return None


class Held:
    """The C-held objects of a snapshot, noted before the body and compared after it."""

    def __init__(self, registry: Registry, prints: dict[int, Any]) -> None:
        self.registry = registry
        self.keys = [k for k, p in prints.items() if _held(p)]
        self.before = {k: _probe(registry.objects[k]) for k in self.keys}

    def stayed(self, used: set[str]) -> dict[str, str]:
        """Top-level name -> ``type: why`` (as ``Changes.lost`` has it), for the held objects the cell
        changed (or may have: ``used`` are the names its code mentions)."""
        out: dict[str, str] = {}
        for key in self.keys:
            obj, path = self.registry.objects[key], self.registry.paths[key]
            probe = self.before[key]
            if probe is not None:
                if _probe(obj) != probe:
                    out.setdefault(path[0], f"{_where(path, obj)}: {STAY}")
            elif len(path) == 1 and path[0] in used:  # inside an object (a lock, a weakref): its own business
                out.setdefault(path[0], f"{_where(path, obj)}: {MAY}")
        return out


def _held(fingerprint: Any) -> bool:
    return type(fingerprint) is tuple and (fingerprint == ("opaque", None) or fingerprint[0] == "generator")


def class_name(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _where(path: Path, obj: Any) -> str:
    return class_name(type(obj)) + ("" if len(path) == 1 else " inside it")


def entry(name: str, why: str) -> str:
    """One part of the warning line: ``con (sqlite3.Connection): changes made … -m signal``."""
    kind, _, rest = why.partition(": ")
    return f"{name} ({kind}): {rest}" if rest in _WORDED else f"{name} ({why})"


def reason(obj: Any, err: BaseException) -> str:
    """Why ``obj``, new or changed in the cell, could not be sent back; lets go of what only the
    child held (a ``NamedTemporaryFile`` deletes its file, as it would when it died in the kernel)."""
    popen = _popen(obj)
    if popen:
        return PROCESS
    closer = getattr(obj, "_closer", None)
    if getattr(closer, "delete", False) and hasattr(obj, "close"):  # tempfile._TemporaryFileWrapper
        try:
            obj.close()
        except Exception:
            pass
        return TEMPORARY
    return f"{type(err).__name__}: {err}"[:300]


def _popen(obj: Any) -> bool:
    return hasattr(obj, "pid") and hasattr(obj, "poll") and hasattr(obj, "communicate")


def short(label: str) -> str:
    """The top-level name of a ``describe``d path: ``ax`` of ``ax.xaxis.label``, ``d`` of ``d['k']``."""
    for i, char in enumerate(label):
        if char in ".[{ ":
            return label[:i]
    return label
