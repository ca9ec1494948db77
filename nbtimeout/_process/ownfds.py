"""Descriptors that belong to this process alone: closed in every child it forks.

Exit detection and the guard rest on end-of-file of pipes: a pipe ends only when every copy of its
write end is closed. A child forked by Python code (a nested fork call, a map worker,
``multiprocessing``, the user's own ``os.fork``) would otherwise keep copies alive; the hook below
closes them in the child. ``exec`` closes them anyway (``os.pipe`` descriptors are not inheritable).
"""

from __future__ import annotations

import contextlib
import os

_held: set[int] = set()


def hold(fd: int) -> int:
    """Mark ``fd`` as this process's own: a forked child will not have it."""
    _held.add(fd)
    return fd


def close(fd: int) -> None:
    """Close an fd from ``hold``. Forgotten first: a fork meanwhile must not close a reused number."""
    _held.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)


def _close_in_child() -> None:  # runs in the child, where only the forking thread exists
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)
