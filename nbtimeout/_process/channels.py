"""Forking a child with the channels every nbtimeout child talks through.

Fork mode, ``map``'s workers and the task servers on an executor all need the same four: a duplex
``multiprocessing`` Pipe for messages, and OS pipes for fd 1, fd 2 and faulthandler's stack dump.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import NoReturn

from .exits import exit_fd
from .forking import fork, reap


@dataclass
class Ends:
    """One side's ends: the Pipe connection and the fds of stdout, stderr and the stack dump."""

    conn: Connection
    out: int
    err: int
    stack: int


def fork_with_channels(child: Callable[[Ends], NoReturn]) -> tuple[int, Ends, int]:
    """Fork; the child runs ``child`` with its (writing) ends. The parent gets the pid, its (reading)
    ends and a descriptor readable once the child exits (``exit_fd``). An interrupt at any point
    leaves no descriptor open and no child running."""
    with contextlib.ExitStack() as undo:
        parent_conn, child_conn = Pipe()
        undo.callback(parent_conn.close)
        undo.callback(child_conn.close)
        pipes = []
        for _ in range(3):
            pipes.append(os.pipe())
            undo.callback(os.close, pipes[-1][0])
            undo.callback(os.close, pipes[-1][1])
        undo.pop_all()
    (out_r, out_w), (err_r, err_w), (stack_r, stack_w) = pipes
    ours, theirs = Ends(parent_conn, out_r, err_r, stack_r), Ends(child_conn, out_w, err_w, stack_w)

    def run() -> NoReturn:  # pragma: no cover - runs in the child
        _close(ours)
        child(theirs)

    pid = 0
    try:
        pid = fork(run)
        exit_end = exit_fd(pid)
    except BaseException:  # an interrupt right after fork: no untracked child may survive
        if pid:
            reap(pid)
        _close(ours)
        raise
    finally:
        _close(theirs)
    return pid, ours, exit_end


def _close(ends: Ends) -> None:
    ends.conn.close()
    for fd in (ends.out, ends.err, ends.stack):
        os.close(fd)
