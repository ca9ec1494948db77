"""The error of a task that was stopped or crashed, with where it was, read off its worker's stack dump.

Workers (local ones and an executor's task servers) register faulthandler for SIGTERM and fatal
signals on a pipe of their own: stopping one dumps its Python stack from C, so even a C loop says
where it was; a segfault says where it happened.
"""

from __future__ import annotations

import os

from .._errors import CellCrashedError, CellTimeoutError
from .._fork.child import user_frames
from .._traceback import attach, format_frames, parse_dump
from .._where import describe_where


def read_dump(fd: int) -> str:
    """What a dead worker dumped on ``fd`` (empty if nothing)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20).decode(errors="replace")
    except BlockingIOError:
        return ""


def stopped(limit: float, elapsed: float, dump: str) -> CellTimeoutError:
    """A CellTimeoutError with the stopped task's stack as its traceback and ``where``."""
    frames = user_frames(parse_dump(dump))
    error = CellTimeoutError(limit, elapsed, "fork", where=describe_where(frames), stack=format_frames(frames) or None)
    attach(error, frames)
    return error


def crashed(how: tuple[int | None, int | None] | None, elapsed: float, dump: str) -> CellCrashedError:
    """A CellCrashedError naming the signal or exit code, with where it crashed if it dumped."""
    frames = user_frames(parse_dump(dump))
    error = CellCrashedError(*(how or (None, None)), elapsed)
    error.where = describe_where(frames)  # type: ignore[attr-defined]
    attach(error, frames)
    return error
