"""What the forked child sends the kernel over the ``multiprocessing`` Pipe.

Small messages are pickled tuples ``(kind, *fields)``. The final ``done`` envelope is pickled
with cloudpickle (protocol 5) and its large buffers (numpy arrays, bytes) follow out of band, so a
256 MB array crosses the pipe once, with no extra copy on either side. The value travels pickled
on its own (``Packed``), so a value that cannot cross costs only itself: ``CellResultError``.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from .. import _pickling as pickling

STREAM, DISPLAY, CLEAR, DONE = "stream", "display", "clear", "done"
# The child says when the user's code starts and ends: the limit counts only that (see engine.py).
PHASE, OWN, BODY, SYNC = "phase", "own", "body", "sync"
# A message the child would have sent on the kernel's iopub socket (comms: widgets, tqdm.auto),
# and a prompt (input/getpass) the kernel asks on its stdin channel; see _fork/comms.py, stdin.py.
IOPUB, INPUT = "iopub", "input"
# Where the child left the kernel's file objects it read or wrote: {id: tell()} (_process/openfiles.py).
FILES = "files"
# Buffers smaller than this travel inside the pickle; larger ones are sent on their own.
OUT_OF_BAND = 1 << 16


@dataclass
class Envelope:
    """The child's last word: a value or an error, and for cells the namespace changes (``sync``)."""

    value: Any = None
    error: BaseException | None = None
    error_frames: list[tuple[str, int, str]] = field(default_factory=list)
    error_text: str = ""
    sync: Any = None


def type_name(obj: Any) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


class Packed:
    """One value pickled on its own in the child; ``load`` unpickles it in the kernel.

    Its bytes and large buffers are PickleBuffers, so they too leave out of band in ``send_done``.
    """

    def __init__(self, data: bytes, buffers: list[pickle.PickleBuffer], type_name: str = "",
                 table: Any = None) -> None:
        self.data: Any = pickle.PickleBuffer(data)
        self.buffers: list[Any] = buffers
        self.type_name = type_name
        self.table = table  # for a cell's changes: the paths of the kernel's objects it refers to

    def load(self, loads: Any = None) -> Any:
        if loads is None:
            return pickle.loads(self.data, buffers=self.buffers)
        return loads(self.data, self.buffers)


def pack(obj: Any) -> Packed:
    """``obj`` pickled with cloudpickle; raises what pickling raises."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickling.dumps(obj, protocol=5, buffer_callback=lambda b: _out_of_band(b, buffers))
    return Packed(data, buffers, type_name(obj))


def _out_of_band(buffer: pickle.PickleBuffer, buffers: list[pickle.PickleBuffer]) -> bool:
    if buffer.raw().nbytes < OUT_OF_BAND:
        return True  # in band
    buffers.append(buffer)
    return False


def value_lost(what: str, type_name: str, err: BaseException) -> Exception:
    from .._errors import CellResultError

    reason = f"{type(err).__qualname__}: {err}" if str(err) else type(err).__qualname__
    return CellResultError(f"{what}, a {type_name}, cannot be carried back from the fork child: {reason}")


_channel: tuple[int, Any] | None = None


def set_channel(post: Any) -> None:
    """In the fork child: how ``announce`` sends (the Courier's, which one thread at a time uses and
    the kernel acknowledges); a process forked from the child announces nothing."""
    global _channel
    _channel = (os.getpid(), post)


def announce(phase: str) -> None:
    """Tell the kernel that nbtimeout's own work starts (OWN), the user's code starts (BODY) or has
    ended (SYNC), with the time it did."""
    if _channel is not None and _channel[0] == os.getpid():
        _channel[1]((PHASE, phase, time.monotonic()))


def send_done(conn: Connection, envelope: Envelope) -> None:
    """Send ``envelope``; large buffers go out of band. A value that does not pickle becomes the error."""
    from .child import failure

    if not isinstance(envelope.value, Packed):
        try:
            envelope.value = pack(envelope.value)
        except Exception as err:
            lost = value_lost("the return value", type_name(envelope.value), err)
            envelope.value, envelope.error = None, failure(lost).error
    buffers: list[pickle.PickleBuffer] = []
    # Pickle before sending anything, so a failure leaves the pipe clean for a retry.
    head = pickling.dumps(envelope, protocol=5, buffer_callback=lambda b: _out_of_band(b, buffers))
    conn.send((DONE, len(head), [b.raw().nbytes for b in buffers]))
    conn.send_bytes(head)
    for buffer in buffers:
        # Straight onto the socket: both ends know the sizes, and Connection's framing would cost
        # the receiver an extra copy of every byte.
        view = buffer.raw().cast("B")
        while view:
            view = view[os.write(conn.fileno(), view):]


def recv_done(conn: Connection, head_size: int, sizes: list[int]) -> Envelope:
    """Receive the envelope announced by a ``done`` message; its value is unpickled (or the error)."""
    head = conn.recv_bytes()
    buffers = []
    for size in sizes:
        buffer = bytearray(size)  # writable, so arrays built on it are writable
        view, got = memoryview(buffer), 0
        while got < size:
            read = os.readv(conn.fileno(), [view[got:]])
            if not read:
                raise EOFError("the fork child went away in the middle of its result")
            got += read
        buffers.append(buffer)
    try:
        envelope = pickle.loads(head, buffers=buffers)
    except Exception as err:
        return Envelope(error=ChildError(f"the fork child's result could not be unpickled: {err!r}"))
    if isinstance(envelope.value, Packed):
        packed, envelope.value = envelope.value, None
        try:
            envelope.value = packed.load()
        except Exception as err:
            envelope.error = value_lost("the return value", packed.type_name, err)
    return envelope


class ChildError(Exception):
    """Stands in for a child's exception that could not cross the pipe; says what it was."""


def make_sendable(envelope: Envelope) -> None:
    """After a failed send: what could not be pickled is named in an error, never sent as a stand-in."""
    from .child import failure

    if envelope.sync is not None:
        envelope.sync = None
        envelope.error = failure(RuntimeError("nbtimeout could not send the fork cell's changes back")).error
