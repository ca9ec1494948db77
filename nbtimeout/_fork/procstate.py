"""Process state a fork cell changes besides its names: carried back where possible, else named.

Carried: the working directory, ``os.environ`` (so ``%env``), ``sys.path``, new imports, the
``random`` module's and numpy's legacy global generators, and the settings of settings.py
(matplotlib's ``rcParams``, numpy's print options and error handling, pandas options, ``%precision``,
warnings filters), and the directories ``%cd`` adds to ``_dh``. Named in the
cell's warning line: a matplotlib backend switch, extensions loaded in the child, threads the cell
left running (they stop with the child).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from . import settings


def kernel_random_state() -> Any:
    """Taken in the kernel before the fork: CPython reseeds ``random`` in a forked child."""
    return random.getstate()


def _numpy_state() -> Any:
    np_random = sys.modules.get("numpy.random")
    return None if np_random is None else np_random.get_state()


def _same_numpy_state(a: Any, b: Any) -> bool:
    return a[0] == b[0] and a[2:] == b[2:] and a[1].tobytes() == b[1].tobytes()


def _backend() -> Any:
    matplotlib = sys.modules.get("matplotlib")
    return None if matplotlib is None else dict.get(matplotlib.rcParams, "backend")


def _extensions(shell: Any) -> set[str]:
    return set(getattr(getattr(shell, "extension_manager", None), "loaded", ()))


def _users_thread(thread: threading.Thread) -> bool:
    """A thread the notebook's code started (a library's own, like tqdm's monitor, is its business)."""
    return type(thread).__module__ in ("threading", "__main__") and not thread.name.startswith("nbtimeout")


def _importable(name: str) -> bool:
    """Whether ``name`` is a module one can import by name: not a submodule, and not a module a C
    extension registers under a top-level name of its own (pandas' ``_cyutility``)."""
    if "." in name:
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _dirs(shell: Any) -> list[Any]:
    history = getattr(shell, "user_ns", {}).get("_dh")
    return list(history) if isinstance(history, list) else []


@dataclass
class ProcessChanges:
    """What the kernel applies before it unpickles the cell's values (imports and paths first)."""

    cwd: str | None = None
    env_set: dict[str, str] = field(default_factory=dict)
    env_unset: list[str] = field(default_factory=list)
    path: list[str] | None = None
    modules: list[str] = field(default_factory=list)
    random: Any = None
    numpy: Any = None
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirs: list[Any] = field(default_factory=list)  # what %cd appended to _dh
    lost: list[str] = field(default_factory=list)

    def apply(self, namespace: dict[str, Any] | None = None) -> list[str]:
        """Apply in the kernel; what could not be done, for the warning line."""
        failed = []
        if self.cwd is not None:
            try:
                os.chdir(self.cwd)
            except OSError as err:
                failed.append(f"the working directory ({err.strerror})")
        os.environ.update(self.env_set)
        for name in self.env_unset:
            os.environ.pop(name, None)
        if self.path is not None:
            sys.path[:] = self.path  # in place: others may hold sys.path
        for name in self.modules:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except Exception:  # an import can raise anything
                    if _importable(name):
                        failed.append(f"import {name}")
        history = None if namespace is None else namespace.get("_dh")
        if self.dirs and isinstance(history, list):
            history.extend(self.dirs)
        return failed + settings.apply(self.settings)

    def apply_random(self) -> None:
        """The generators go on after the cell's draws (last: unpickling must not draw)."""
        if self.random is not None:
            random.setstate(self.random)
        if self.numpy is not None:
            importlib.import_module("numpy.random").set_state(self.numpy)


@dataclass
class ProcessState:
    """Noted in the child before the body."""

    cwd: str
    environ: dict[str, str]
    path: list[str]
    modules: set[str]
    random: Any
    numpy: Any
    settings: dict[str, Any]
    backend: Any
    extensions: set[str]
    threads: set[int]
    dirs: list[Any] = field(default_factory=list)

    @classmethod
    def take(cls, shell: Any, kernel_random: Any) -> ProcessState:
        random.setstate(kernel_random)  # the cell draws what it would have drawn in the kernel
        try:
            cwd = os.getcwd()
        except OSError:  # the kernel's directory was deleted
            cwd = ""
        return cls(cwd, dict(os.environ), list(sys.path), set(sys.modules), kernel_random,
                   _numpy_state(), settings.read(), _backend(), _extensions(shell),
                   {t.ident for t in threading.enumerate()}, _dirs(shell))

    def changes(self, shell: Any) -> ProcessChanges:
        out = ProcessChanges()
        with contextlib.suppress(OSError):
            if os.getcwd() != self.cwd:
                out.cwd = os.getcwd()
        out.env_set = {k: v for k, v in os.environ.items() if self.environ.get(k) != v}
        out.env_unset = [k for k in self.environ if k not in os.environ]
        if sys.path != self.path:
            out.path = list(sys.path)
        out.modules = sorted(set(sys.modules) - self.modules, key=lambda n: (n.count("."), n))
        if random.getstate() != self.random:
            out.random = random.getstate()
        numpy_now = _numpy_state()
        if self.numpy is not None and not _same_numpy_state(self.numpy, numpy_now):
            out.numpy = numpy_now
        out.settings = settings.changed(self.settings)
        dirs = _dirs(shell)
        if dirs[:len(self.dirs)] == self.dirs:
            out.dirs = dirs[len(self.dirs):]
        backend = _backend()
        if backend != self.backend and self.backend is not None:
            out.lost.append(f"matplotlib backend switch to {backend!r}")
        out.lost += [f"%load_ext {name.removeprefix('IPython.extensions.')}"
                     for name in sorted(_extensions(shell) - self.extensions)]
        threads = [t.name for t in threading.enumerate()
                   if t.ident not in self.threads and t.is_alive() and _users_thread(t)]
        if threads:
            out.lost.append(f"threads {', '.join(threads)} (they stop with the fork child)")
        return out
