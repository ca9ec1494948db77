"""File objects across a fork: what a forked child writes to a file reaches it exactly once.

``fork()`` copies every file object's buffer into the child, and the child leaves through
``os._exit``, which flushes nothing. So:

- before forking, the kernel flushes its writable file objects: no buffer the child inherits holds
  the kernel's data, which would otherwise be written twice (by the child, then by the kernel);
- before the child leaves, it flushes those same objects (their buffers now hold only what the
  child wrote) and the file objects it opened itself.

Finding file objects takes a scan of every object the collector tracks (``gc.get_objects()``:
about 0.2 s per million tracked objects, measured). It runs only when the process has a writable
regular file open that the last scan did not account for (a new file; listing the descriptors
costs well under a millisecond), so a notebook pays it about once per file it opens for writing,
not once per cell. Pipes and sockets do not trigger a scan. In the child, ``gc.get_objects()``
lists only objects made after the fork (``fork()`` froze the kernel's), so its scan is cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import os
import stat
import weakref
from typing import Any

_FILES = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom, io.BufferedRWPair)
_FD_DIRS = ("/proc/self/fd", "/dev/fd")

_known: weakref.WeakSet[Any] = weakref.WeakSet()  # writable file objects found by the last scan
_accounted: set[tuple[int, int, int]] = set()  # (fd, device, inode) open at the last scan
_inherited: list[Any] = []  # the kernel's writable files, flushed just before this fork


def _writable_regular() -> set[tuple[int, int, int]] | None:
    """(fd, device, inode) of every regular file open for writing; None if fds cannot be listed."""
    for folder in _FD_DIRS:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found = set()
        for name in names:
            fd = int(name)
            try:
                info = os.fstat(fd)
                writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
            except OSError:  # the listing's own descriptor, or one closed meanwhile
                continue
            if writable and stat.S_ISREG(info.st_mode):
                found.add((fd, info.st_dev, info.st_ino))
        return found
    return None


def _scan(objects: list[Any]) -> list[Any]:
    """The open writable file objects among ``objects``; text wrappers first (they feed buffers)."""
    files = [o for o in objects if isinstance(o, _FILES) and _writable(o)]
    return sorted(files, key=lambda f: not isinstance(f, io.TextIOWrapper))


def _writable(file: Any) -> bool:
    try:
        return not file.closed and file.writable()
    except Exception:  # a detached or broken wrapper
        return False


def _flush(files: list[Any]) -> None:
    for file in files:
        with contextlib.suppress(Exception):  # closed meanwhile, disk full: the user's to see later
            file.flush()


def before_fork() -> None:
    """In the kernel, before ``fork()`` (and before ``gc.freeze()``): flush its writable files."""
    global _known, _accounted
    fds = _writable_regular()
    if fds is None or not fds <= _accounted:
        _known = weakref.WeakSet(_scan(gc.get_objects()))
        _accounted = fds or set()
    _inherited[:] = _scan(list(_known))
    _flush(_inherited)


def after_fork_in_parent() -> None:
    """The kernel holds no strong reference: ``del f`` must still close a file."""
    _inherited.clear()


def flush_child_files() -> None:
    """In the child, before ``os._exit`` (a ``map`` worker: after each task): flush what the child
    wrote, to files inherited from the kernel and to files it opened itself."""
    global _accounted
    _flush(_inherited)
    fds = _writable_regular()
    held = set()
    for file in _inherited:
        with contextlib.suppress(Exception):
            held.add(file.fileno())
    if fds is None or any(key not in _accounted and key[0] not in held for key in fds):
        # Objects made in the child only (the kernel's are frozen): cheap. Remembered, so a
        # worker's next task does not scan again for the same files.
        _inherited[:] = _scan([*_inherited, *gc.get_objects()])
        _flush(_inherited)
        _accounted = fds or set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=after_fork_in_parent)
