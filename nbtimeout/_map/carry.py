"""Carry one task's result between processes so that nothing about it can sink the whole map.

Where the task ran, ``pack`` pickles its value on its own, or its exception as fork mode carries
one (``_fork/errors.py``), into a ``Parcel`` that always pickles; where the caller is, ``unpack``
unpickles it. A value that fails either step loses only its task: the task is ``failed`` with a
``CellResultError`` naming what could not be carried, never ``finished`` with a stand-in. An
exception that cannot travel arrives as fork mode's stand-in: same name and message, and a note
that says why.
"""

from __future__ import annotations

import pickle
from typing import Any

from .. import _pickling as pickling
from .._errors import CellCrashedError, CellResultError, CellTimeoutError
from .._fork.child import failure
from .._fork.errors import rebuild
from .._fork.protocol import Envelope
from .._traceback import format_frames
from .._where import Frames, describe_where, frames_of
from .outcome import FAILED, FINISHED

# (status, the pickled value, or the pickled CarriedError of the task's exception)
Parcel = tuple[str, bytes]


def _describe(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__


def _said(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__qualname__}: {text}" if text else type(error).__qualname__


def pack(envelope: Envelope, status: str = FAILED) -> Parcel:
    """Where the task ran: its value, or its error (given ``status``), as a Parcel that always pickles.

    The error is the one ``child.failure`` carries (see ``_fork/errors.py``: an exception that does
    not pickle, or would not unpickle, travels as a stand-in of the same name that says so).
    """
    if envelope.error is None:
        try:
            return FINISHED, pickling.dumps(envelope.value, protocol=5)
        except BaseException as err:  # a __reduce__ may raise anything
            problem = CellResultError(f"the value fn returned, a {_describe(envelope.value)}, could not be "
                                      f"pickled to send it back: {_said(err)}")
            return FAILED, pickling.dumps(failure(problem).error, protocol=5)
    return status, pickling.dumps(envelope.error, protocol=5)


def error_parcel(error: BaseException, status: str) -> Parcel:
    """A Parcel for an error raised where the task ran (the engine's CellTimeoutError, ...)."""
    return pack(failure(error), status)


def unpack(parcel: Parcel) -> tuple[str, Any, BaseException | None]:
    """Where the caller is: ``(status, value, error)``; an error keeps the task's stack and chain."""
    status, blob = parcel
    try:
        payload = pickle.loads(blob)
    except BaseException as err:  # a class missing here, a __reduce__ that fails on this side ...
        return FAILED, None, CellResultError(f"the value fn returned could not be unpickled here: {_said(err)}")
    if status == FINISHED:
        return FINISHED, payload, None
    error = rebuild(payload)
    frames = frames_of(error.__traceback__)
    if isinstance(error, (CellTimeoutError, CellCrashedError)) and frames:
        _relocate(error, frames)
    return status, None, error


def _relocate(error: CellTimeoutError | CellCrashedError, frames: Frames) -> None:
    """Where a stopped or crashed task was, in the caller's terms ("line 3 in f() of In [5]"): the
    worker has neither the caller's cell numbers nor, for a notebook's function, its source lines."""
    where = describe_where(frames)
    if isinstance(error, CellTimeoutError):
        error._where, error.stack = where, format_frames(frames) or error.stack
    else:
        error.where = where  # type: ignore[attr-defined]
