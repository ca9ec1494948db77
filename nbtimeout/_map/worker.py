"""The worker side of ``nbtimeout.map``: a forked process that runs tasks until it is killed.

It reads a message from its socketpair (a task index for local workers, a pickled task for an
executor's servers), runs the call ``task_for(message)`` makes of it and answers with one message
holding the task's Parcel (see carry.py); output goes through the same routing as fork mode, so
the parent can tell which task printed what (one task at a time, in order on one socket).
"""

from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .. import _pickling as pickling
from .._fork.capture import route_child_output
from .._fork.child import _limit_memory, _unlimit_memory, outcome
from .._fork.threads import guard_kernel_threads
from .._process.forking import LIBC, detach
from .._process.openfiles import flush_child_files
from .carry import pack

RESULT = "result"  # the pool's message for a task's envelope


def serve(conn: Connection, task_for: Callable[[Any], Callable[[], Any]], parent: int, out_w: int,
          err_w: int, shell: Any, memory: int | None = None,
          stack_w: int | None = None) -> None:  # pragma: no cover - runs in the worker
    """Run tasks until the parent kills us; never returns (``os._exit`` only).

    With ``stack_w``, SIGTERM and fatal signals dump the Python stack there (then SIGTERM kills),
    so the parent can say where a stopped or crashed task was; else a crash's stack goes to fd 2.
    """
    try:
        detach(parent)
        route_child_output(conn, out_w, err_w, shell)
        guard_kernel_threads()
        if stack_w is None:
            # A segfault's Python stack goes to the cell, prefixed with the task, not the kernel's log.
            faulthandler.enable(file=2, all_threads=False)
        else:
            faulthandler.register(signal.SIGTERM, file=stack_w, all_threads=False, chain=True)
            faulthandler.enable(file=stack_w, all_threads=False)
        while True:
            try:
                call = task_for(conn.recv())
            except EOFError:
                break
            if memory is not None:
                _limit_memory(memory)  # from what this worker maps now: each task gets ``memory`` more
            envelope = outcome(call)
            _unlimit_memory()  # pickling the result is not the task's to pay for
            flush_child_files()  # what the task wrote reaches its files even if the worker is killed
            LIBC.fflush(None)  # C stdio output belongs to this task, not the next one
            # One message, one write: the parent wakes once. The parcel always pickles (see carry).
            conn.send_bytes(pickling.dumps((RESULT, pack(envelope)), protocol=5))
    except BaseException:  # mostly the parent gone (a broken pipe): the parent sees a crash
        os._exit(70)
    finally:
        os._exit(0)
