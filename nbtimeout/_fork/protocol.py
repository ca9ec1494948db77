"""What the forked child sends the kernel over the ``multiprocessing`` Pipe.

Small messages are pickled tuples ``(kind, *fields)``. The final ``done`` envelope is pickled
with cloudpickle (protocol 5) and its large buffers (numpy arrays, bytes) follow out of band, so a
256 MB array crosses the pipe once, with no extra copy on either side.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

STREAM, DISPLAY, CLEAR, DONE = "stream", "display", "clear", "done"
# Buffers smaller than this travel inside the pickle; larger ones are sent on their own.
OUT_OF_BAND = 1 << 16


@dataclass
class Envelope:
    """The child's last word: a value or an error, and for cells the namespace changes."""

    value: Any = None
    error: BaseException | None = None
    error_frames: list[tuple[str, int, str]] = field(default_factory=list)
    error_text: str = ""
    changed: dict[str, Any] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    unsent: list[str] = field(default_factory=list)


def send_done(conn: Connection, envelope: Envelope) -> None:
    """Send ``envelope``; large buffers go out of band."""
    buffers: list[pickle.PickleBuffer] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND:
            return True  # in band
        buffers.append(buffer)
        return False

    # Pickle before sending anything, so a failure leaves the pipe clean for a retry.
    head = cloudpickle.dumps(envelope, protocol=5, buffer_callback=keep_large)
    conn.send((DONE, len(head), [b.raw().nbytes for b in buffers]))
    conn.send_bytes(head)
    for buffer in buffers:
        # Straight onto the socket: both ends know the sizes, and Connection's framing would cost
        # the receiver an extra copy of every byte.
        view = buffer.raw().cast("B")
        while view:
            view = view[os.write(conn.fileno(), view):]


def recv_done(conn: Connection, head_size: int, sizes: list[int]) -> Envelope:
    """Receive the envelope announced by a ``done`` message."""
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
        return pickle.loads(head, buffers=buffers)
    except Exception as err:
        return Envelope(error=ChildError(f"the fork child's result could not be unpickled: {err!r}"))


class ChildError(Exception):
    """Stands in for a child's exception that could not cross the pipe; says what it was."""


class Shown:
    """A value that could not be sent back: its rich display, made in the child."""

    def __init__(self, value: Any) -> None:
        try:
            from IPython import get_ipython

            self.data, self.metadata = get_ipython().display_formatter.format(value)
        except Exception:
            self.data, self.metadata = {"text/plain": repr(value)}, {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return self.data.get("text/plain", "<value not sent back>")


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda b: False)
    except Exception:
        return False
    return True


def make_sendable(envelope: Envelope) -> None:
    """After a failed send: list unpicklable names as unsent, and describe the value or error."""
    for name in list(envelope.changed):
        if not _picklable(envelope.changed[name]):
            envelope.unsent.append(name)
            del envelope.changed[name]
    if not _picklable(envelope.value):
        envelope.value = Shown(envelope.value)
    if envelope.error is not None and not _picklable(envelope.error):
        envelope.error = ChildError(f"{type(envelope.error).__name__}: {envelope.error}")
