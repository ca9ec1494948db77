"""Kernel side of the differential runner: installed in each kernel as a module, never in ``__main__``.

The runner sends this file's text to a fresh kernel (silent execute, so no history, no ``Out``), where
it becomes the module ``nbtimeout_diffprobe``. ``setup`` gives the notebook a doctest module's globals
as ``doctest`` would; ``state()`` is evaluated as a user expression after every cell and returns, as
JSON, what the namespace holds then: each name the cell made or rebound (type and repr), which names
share one object, which names still hold the object they held after the previous cell, ``_``, ``In``
and ``Out`` of the cell. Nothing here may add a name to the user's namespace.
"""

from __future__ import annotations

import importlib
import json
import re
import sys

_CACHE = re.compile(r"^(_\d+|_i\d*|_ii+|_+|_oh|_ih|_dh|In|Out|exit|quit|get_ipython|_exit_code)$")
_REPR_CHARS = 400
_before: dict[str, int] = {}  # name -> id of its object after the setup
_last: dict[str, tuple[int, object]] = {}  # name -> (id, weak reference or None) after the previous cell


def _shell():
    from IPython import get_ipython

    return get_ipython()


def setup(module: str | None, extras: dict[str, str], folder: str) -> None:
    """The notebook's namespace as doctest gives ``module``'s examples: its globals (dunders
    aside), plus ``extras`` (name -> module to import: ``np``, ``pd``); ``folder`` the working one."""
    import os
    import warnings

    os.chdir(folder)
    ns = _shell().user_ns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if module is not None:
            for name, value in vars(importlib.import_module(module)).items():
                if not (name.startswith("__") and name.endswith("__")):
                    ns[name] = value
        for name, target in extras.items():
            ns[name] = importlib.import_module(target)
    baseline()


def baseline() -> None:
    """Names bound now to these objects count as setup, not as the cells' work."""
    _before.clear()
    _before.update({name: id(value) for name, value in _shell().user_ns.items()})
    _last.clear()


def safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except BaseException as err:  # a repr that fails is itself worth comparing
        text = f"<repr failed: {type(err).__name__}>"
    return text if len(text) <= _REPR_CHARS else text[:_REPR_CHARS] + "…"


def _kind(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def state() -> str:
    """JSON of the namespace and history as they stand after a cell."""
    shell = _shell()
    ns = shell.user_ns
    hidden = shell.user_ns_hidden
    names = {}
    for name, value in list(ns.items()):
        if _CACHE.match(name) or (name in hidden and hidden[name] is value):
            continue
        if _before.get(name) == id(value):
            continue
        names[name] = value
    groups: dict[int, list[str]] = {}
    for name, value in names.items():
        groups.setdefault(id(value), []).append(name)
    kept = sorted(name for name, value in names.items() if name in _last and _same(_last[name], value))
    moved = sorted(name for name, value in names.items() if name in _last and not _same(_last[name], value))
    count = shell.execution_count - 1  # the cell's own number: run_cell has counted it already
    out = ns.get("Out", {})
    history = ns.get("In", [])
    report = {
        "names": {name: [_kind(value), safe_repr(value)] for name, value in sorted(names.items())},
        "shared": sorted(sorted(group) for group in groups.values() if len(group) > 1),
        "kept": kept,
        "rebound": moved,
        "gone": sorted(name for name in _before if name not in ns and not _CACHE.match(name)),
        "_": safe_repr(ns.get("_")),
        "Out": safe_repr(out.get(count)) if count in out else None,
        "In": history[count] if 0 <= count < len(history) else None,
        "count": count,
    }
    _last.clear()
    _last.update({name: (id(value), _weak(value)) for name, value in names.items()})
    return json.dumps(report)


def _weak(value: object) -> object:
    """A weak reference to ``value`` where it takes one: a freed object's id may be reused."""
    import weakref

    try:
        return weakref.ref(value)
    except TypeError:
        return None


def _same(seen: tuple[int, object], value: object) -> bool:
    ident, ref = seen
    return ident == id(value) and (ref is None or ref() is value)


_deaths: list[str] = []  # "thread name: exception" of every thread that died of an exception


def watch_threads() -> None:
    """From now on, note every thread that ends with an exception (the previous hook still runs)."""
    import threading

    previous = threading.excepthook

    def noted(args):  # threading.ExceptHookArgs
        name = args.thread.name if args.thread is not None else "?"
        _deaths.append(f"{name}: {args.exc_type.__name__}: {safe_repr(args.exc_value)}")
        previous(args)

    threading.excepthook = noted


def threads() -> str:
    """JSON: nbtimeout's threads alive now, threads that died, and the errors its watchdog recorded."""
    import threading

    alive = sorted(t.name for t in threading.enumerate() if t.name.startswith("nbtimeout"))
    errors = []
    watchdog = sys.modules.get("nbtimeout._engines.watchdog")
    if watchdog is not None:
        errors = [safe_repr(e)[-300:] for e in getattr(watchdog, "errors", [])]
    return json.dumps({"alive": alive, "died": list(_deaths), "errors": errors})
