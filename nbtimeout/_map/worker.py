"""The worker side of ``nbtimeout.map``: a forked process that runs tasks until it is killed.

It reads a task index from its socketpair, runs ``fn(items[index])`` and answers with one message
holding the task's Parcel (see carry.py); output goes through the same routing as fork mode, so
the parent can tell which task printed what (one task at a time, in order on one socket).
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

from .._fork.capture import route_child_output
from .._fork.child import _limit_memory, _unlimit_memory, outcome
from .._fork.threads import guard_kernel_threads
from .._process.forking import LIBC, detach
from .._process.openfiles import flush_child_files
from .carry import pack

RESULT = "result"  # the pool's message for a task's envelope


def serve(conn: Connection, fn: Callable[[Any], Any], items: list[Any], parent: int,
          out_w: int, err_w: int, shell: Any, memory: int | None = None) -> None:  # pragma: no cover
    """Run tasks sent by index until the parent kills us; never returns (``os._exit`` only)."""
    try:
        detach(parent)
        route_child_output(conn, out_w, err_w, shell)
        guard_kernel_threads()
        # A segfault's Python stack goes to the cell, prefixed with the task, not the kernel's log.
        faulthandler.enable(file=2, all_threads=False)
        while True:
            try:
                index = conn.recv()
            except EOFError:
                break
            if memory is not None:
                _limit_memory(memory)  # from what this worker maps now: each task gets ``memory`` more
            envelope = outcome(lambda: fn(items[index]))  # noqa: B023 - called at once
            _unlimit_memory()  # pickling the result is not the task's to pay for
            flush_child_files()  # what the task wrote reaches its files even if the worker is killed
            LIBC.fflush(None)  # C stdio output belongs to this task, not the next one
            # One message, one write: the parent wakes once. The parcel always pickles (see carry).
            conn.send_bytes(cloudpickle.dumps((RESULT, pack(envelope)), protocol=5))
    except BaseException:  # mostly the parent gone (a broken pipe): the parent sees a crash
        os._exit(70)
    finally:
        os._exit(0)
