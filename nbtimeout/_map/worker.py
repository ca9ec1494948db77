"""The worker side of ``nbtimeout.map``: a forked process that runs tasks until it is killed.

It reads a task index from its socketpair, runs ``fn(items[index])`` and answers with one
cloudpickled message; output goes through the same routing as fork mode, so the parent can tell
which task printed what (one task at a time, in order on one socket).
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from .._fork.capture import route_child_output
from .._fork.child import outcome
from .._fork.protocol import Envelope, make_sendable
from .._process.forking import LIBC, detach

RESULT = "result"  # the pool's message for a task's envelope


def serve(conn: Connection, fn: Callable[[Any], Any], items: list[Any], parent: int,
          out_w: int, err_w: int, shell: Any) -> None:  # pragma: no cover - runs in the child
    """Run tasks sent by index until the parent kills us; never returns (``os._exit`` only)."""
    try:
        detach(parent)
        route_child_output(conn, out_w, err_w, shell)
        # A segfault's Python stack goes to the cell, prefixed with the task, not the kernel's log.
        faulthandler.enable(file=2, all_threads=False)
        while True:
            try:
                index = conn.recv()
            except EOFError:
                break
            envelope = outcome(lambda: fn(items[index]))  # noqa: B023 - called at once
            LIBC.fflush(None)  # C stdio output belongs to this task, not the next one
            _answer(conn, envelope)
    except BaseException:  # mostly the parent gone (a broken pipe): the parent sees a crash
        os._exit(70)
    finally:
        os._exit(0)


def _answer(conn: Connection, envelope: Envelope) -> None:  # pragma: no cover - in the worker
    """Send the task's envelope as one message: one write, so the parent wakes once, not thrice."""
    try:
        data = cloudpickle.dumps((RESULT, envelope), protocol=5)
    except Exception:
        make_sendable(envelope)  # what cannot be pickled is described, never lost
        data = cloudpickle.dumps((RESULT, envelope), protocol=5)
    conn.send_bytes(data)
