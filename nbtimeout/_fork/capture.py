"""Output of a forked child: routed into the Pipe in the child, replayed into the cell in the kernel.

Text, from ``print`` as from C code or subprocesses, goes through fd 1/2, two OS pipes the kernel
reads directly: one channel per stream, so ``print`` and raw writes keep their order. ``display`` and
``clear_output`` travel as messages on the Pipe; the kernel reads the fd pipes dry before it shows
one. With ``ack`` the child then waits for the kernel's word that it was shown, so no text written
after a display can be read before it: text and displays keep their order.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .. import _streams
from .protocol import CLEAR, DISPLAY, STREAM


class PipeStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the child: every write goes straight to fd 1 or 2, unbuffered."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn, self.name = conn, name
        self._fd = 1 if name == "stdout" else 2

    def write(self, text: str) -> int:
        data = str(text).encode("utf-8", "surrogateescape")
        while data:
            data = data[os.write(self._fd, data):]
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # subprocess and faulthandler want a real descriptor
        return self._fd


class PipePublisher:
    """The child's display publisher: ``display()``, updates and ``clear_output`` as messages."""

    is_publishing = False

    def __init__(self, conn: Connection, ack: bool = False) -> None:
        self._conn, self._ack = conn, ack

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *,
                transient: dict[str, Any] | None = None, update: bool = False, **_: Any) -> None:
        self._send((DISPLAY, data, metadata or {}, transient or {}, update))

    def clear_output(self, wait: bool = False) -> None:
        self._send((CLEAR, wait))

    def _send(self, message: tuple[Any, ...]) -> None:
        self._conn.send(message)
        if self._ack:
            self._conn.recv_bytes()  # shown: text written from now on comes after it

    def __getattr__(self, name: str) -> Any:  # anything else IPython asks of a publisher
        raise AttributeError(name)


def route_child_output(conn: Connection, out_fd: int, err_fd: int, shell: Any, ack: bool = False) -> None:
    """In the child, before user code: point fd 1/2, sys streams and display at the kernel.

    ``ack``: ``conn`` is duplex and the kernel answers each display (see the module's docstring).
    """
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    streams = {"stdout": PipeStream(conn, "stdout"), "stderr": PipeStream(conn, "stderr")}
    for name, stream in streams.items():
        old = getattr(sys, name)
        if not _streams.usable(old):  # None or closed: the cell finds it as the kernel has it
            continue
        # Loggers and others may hold the kernel's own stream object: make it write here too.
        if hasattr(old, "pub_thread"):
            old.write, old.flush = stream.write, stream.flush
        setattr(sys, name, stream)
    if shell is None:
        return
    publisher = PipePublisher(conn, ack)
    shell.display_pub = publisher
    if hasattr(shell, "displayhook"):
        shell.displayhook.write_output_prompt = lambda: None
    kernel = getattr(shell, "kernel", None)
    session = getattr(kernel, "session", None)
    if session is not None:
        # The kernel's sockets belong to the kernel: comms (widgets) cannot work from a child.
        session.send = _no_sockets


def _no_sockets(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("nbtimeout: a fork cell cannot open widgets or comms; display them from a "
                       "signal-mode or untimed cell")


def read_dry(fd: int, write: Callable[[bytes], None]) -> bool:
    """Pass on what ``fd`` holds now, never blocking; True at end of file (after a final ``b""``)."""
    os.set_blocking(fd, False)
    try:
        while data := os.read(fd, 1 << 16):
            write(data)
    except BlockingIOError:
        return False
    write(b"")  # end of file: lets a decoder flush what it held back
    return True


class Replay:
    """In the kernel: write what the child sent into the current cell, in order.

    ``drain`` reads the child's fd pipes dry; it is called before each display so text written
    before it is shown before it.
    """

    def __init__(self, shell: Any, drain: Callable[[], None] = lambda: None,
                 shown: Callable[[], None] = lambda: None) -> None:
        self._shell, self.drain, self.shown = shell, drain, shown
        self._decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}

    def raw(self, name: str, data: bytes) -> None:
        """Bytes read from the child's fd 1 or 2."""
        text = self._decoders[name].decode(data, final=not data)
        if text:
            self.text(name, text)

    def text(self, name: str, text: str) -> None:
        _streams.write(name, text)  # dropped where the program set the stream to None or closed it

    def flush(self) -> None:
        """Send the text now rather than at the kernel stream's next flush tick: output is live."""
        _streams.flush("stdout", "stderr")

    def message(self, kind: str, *fields: Any) -> None:
        """A STREAM, DISPLAY or CLEAR message."""
        if kind == STREAM:
            self.text(*fields)
            return
        self.drain()
        self.flush()
        try:
            if self._shell is None or not _streams.can_display():  # displays go where text goes
                return
            if kind == DISPLAY:
                data, metadata, transient, update = fields
                self._shell.display_pub.publish(data, metadata, transient=transient, update=update)
            elif kind == CLEAR:
                self._shell.display_pub.clear_output(*fields)
        finally:
            self.shown()
