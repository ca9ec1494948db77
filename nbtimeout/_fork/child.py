"""The forked child's side of the fork engine: set up, run the work, send the envelope, ``os._exit``."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .._process import memory
from .._process.forking import LIBC, detach
from .._process.openfiles import flush_child_files, note_positions
from .._process.openfiles import moved as files_moved
from .._where import PACKAGE_DIR as _HERE
from .capture import route_child_output
from .protocol import BODY, FILES, SYNC, Envelope, announce, make_sendable, send_done, set_channel
from .stackdump import dump_on_sigterm
from .threads import guard_kernel_threads


def child_main(work: Callable[[], Envelope], shell: Any, conn: Connection, out_w: int, err_w: int,
               stack_w: int, parent: int, memory: int | None) -> None:  # pragma: no cover - child
    """Everything the child does; it leaves only through ``os._exit``."""
    try:
        detach(parent)
        # SIGTERM first dumps the Python stack from C (so even a C loop reports where it is),
        # then chains to SIG_DFL: the dump is complete before the child dies. A fatal signal
        # (SIGSEGV, SIGABRT ...) dumps the stack the same way, so a crash says where it happened.
        # A SIGTERM handler the cell installs keeps the dump in front of it (see stackdump).
        dump_on_sigterm(stack_w)
        faulthandler.enable(file=stack_w, all_threads=False)
        courier = route_child_output(conn, out_w, err_w, shell, ack=True)
        set_channel(courier.post)  # outcome() tells the kernel when the user's code runs
        guard_kernel_threads()
        note_positions()
        if memory is not None:
            _limit_memory(memory)
        envelope = work()
        _unlimit_memory()
        flush_child_files()  # os._exit flushes no file object: what the cell wrote must arrive
        moved = files_moved()
        if moved:  # the kernel seeks its file objects there, before it gets the envelope
            courier.post((FILES, moved))
        # C stdio buffers first: the kernel stops reading fd 1/2 soon after the envelope arrives.
        LIBC.fflush(None)
        _send(conn, envelope)
    except BaseException:
        try:
            import traceback

            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(70)
    finally:
        LIBC.fflush(None)
        os._exit(0)


def _limit_memory(extra: int) -> None:
    """Allow ``extra`` bytes beyond what this process has now (see _process/memory.py)."""
    memory.apply(extra)


def _unlimit_memory() -> None:
    """Lift the allowance (room to pickle the result)."""
    memory.release()


def _send(conn: Connection, envelope: Envelope) -> None:  # pragma: no cover - child
    """Send the envelope; what cannot be pickled is replaced by a description, never lost."""
    try:
        send_done(conn, envelope)
    except Exception:
        make_sendable(envelope)
        send_done(conn, envelope)


def outcome(func: Callable[[], Any]) -> Envelope:
    """Run ``func`` in the child: an envelope with its value or its error and stack."""
    announce(BODY)  # the limit counts from here, and stops counting at SYNC
    try:
        value = func()
        announce(SYNC)
        memory.settle()  # where --memory is only watched, going over is a MemoryError here
        return Envelope(value=value)
    except BaseException as err:
        announce(SYNC)
        memory.settle(raising=False)
        return failure(err)


def failure(err: BaseException) -> Envelope:
    """An envelope carrying ``err`` with its chain, tracebacks and locals (see ``errors``)."""
    from .errors import carry

    return Envelope(error=carry(err))


def user_frames(frames: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The frames below nbtimeout's own: a dumped stack also holds the kernel's frames above them."""
    ours = [i for i, f in enumerate(frames) if f[0].startswith(_HERE)]
    return frames[ours[-1] + 1:] if ours else frames
