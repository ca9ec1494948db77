"""Output of a forked child: routed into the Pipe in the child, replayed into the cell in the kernel.

Text, from ``print`` as from C code or subprocesses, goes through fd 1/2, two OS pipes the kernel
reads directly: one channel per stream, so ``print`` and raw writes keep their order. ``display`` and
``clear_output`` travel as messages on the Pipe, and so do comms (comms.py) and prompts (stdin.py);
the kernel reads the fd pipes dry before it handles one. With ``ack`` the child then waits for the
kernel's word that it was shown, so no text written after a display can be read before it: text,
displays and widget updates keep their order (an ``Output`` widget captures the right prints).
"""

from __future__ import annotations

import codecs
import io
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .. import _streams
from .._process.openfiles import move_to
from .comms import child_send, iopub_sockets, publish
from .protocol import CLEAR, DISPLAY, FILES, INPUT, IOPUB, STREAM
from .stdin import answer, child_input_request


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


class Courier:
    """The child's end of the Pipe for messages: one sender at a time (threads of the child too:
    a nested cell's countdown, a map grid, tqdm's monitor), each waiting for the kernel's word.

    ``ack``: the kernel answers every message (fork mode); a ``map`` worker's kernel does not.
    """

    def __init__(self, conn: Connection, ack: bool) -> None:
        self._conn, self.ack = conn, ack
        self._lock = threading.Lock()

    def post(self, message: tuple[Any, ...]) -> None:
        """Send; with ``ack`` return once it was shown, so text written from now on comes after it."""
        with self._lock:
            self._conn.send(message)
            if self.ack:
                self._conn.recv_bytes()

    def ask(self, message: tuple[Any, ...]) -> Any:
        """Send and return the kernel's reply (only where the kernel answers: ``ack``)."""
        with self._lock:
            self._conn.send(message)
            return self._conn.recv()


class PipePublisher:
    """The child's display publisher: ``display()``, updates and ``clear_output`` as messages."""

    is_publishing = False

    def __init__(self, courier: Courier) -> None:
        self._courier = courier

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *,
                transient: dict[str, Any] | None = None, update: bool = False, **_: Any) -> None:
        self._courier.post((DISPLAY, data, metadata or {}, transient or {}, update))

    def clear_output(self, wait: bool = False) -> None:
        self._courier.post((CLEAR, wait))

    def set_parent(self, parent: Any) -> None:
        """The kernel shows the child's displays under the cell's own request (ipywidgets'
        ``Output`` sets it to that same request)."""

    def __getattr__(self, name: str) -> Any:  # anything else IPython asks of a publisher
        raise AttributeError(name)


def route_child_output(conn: Connection, out_fd: int, err_fd: int, shell: Any, ack: bool = False) -> Courier:
    """In the child, before user code: point fd 1/2, sys streams, display, comms and prompts at
    the kernel.

    ``ack``: ``conn`` is duplex and the kernel answers each message (see the module's docstring);
    without it (``map`` workers) ``input()`` raises StdinNotImplementedError. Returns the
    Courier, for the child's own messages.
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
    courier = Courier(conn, ack)
    if shell is None:
        return courier
    kernel = getattr(shell, "kernel", None)
    if getattr(kernel, "session", None) is not None:
        # The kernel's sockets belong to the kernel: the kernel sends comms and prompts for us.
        kernel.session.send = child_send(courier.post, iopub_sockets(shell))
        kernel._input_request = child_input_request(courier.ask if ack else None)
    shell.display_pub = PipePublisher(courier)
    if hasattr(shell, "displayhook"):
        shell.displayhook.write_output_prompt = lambda: None
    return courier


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

    ``drain`` reads the child's fd pipes dry; it is called before each message so text written
    before it is shown before it. ``shown`` tells the child a message was handled; ``reply``
    sends the answer to a prompt. ``deadline`` (monotonic; the engine moves it) bounds the wait at a prompt.
    """

    def __init__(self, shell: Any, drain: Callable[[], None] = lambda: None,
                 shown: Callable[[], None] = lambda: None, reply: Callable[[Any], None] = lambda _: None,
                 deadline: float | None = None) -> None:
        self._shell, self.drain, self.shown, self.reply = shell, drain, shown, reply
        self.deadline = deadline
        self._unflushed = True  # a fresh Replay does not know what the kernel's streams hold
        self._decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}

    def raw(self, name: str, data: bytes) -> None:
        """Bytes read from the child's fd 1 or 2."""
        text = self._decoders[name].decode(data, final=not data)
        if text:
            self.text(name, text)

    def text(self, name: str, text: str) -> None:
        _streams.write(name, text)  # dropped where the program set the stream to None or closed it
        self._unflushed = True

    def flush(self) -> None:
        """Send the text now rather than at the kernel stream's next flush tick: output is live.

        Only when text was written since the last flush: a kernel stream's flush waits for its IO
        thread, twice the cost of relaying a widget update."""
        if self._unflushed:
            self._unflushed = False
            _streams.flush("stdout", "stderr")

    def message(self, kind: str, *fields: Any) -> None:
        """A STREAM, DISPLAY, CLEAR, IOPUB, INPUT or FILES message.

        INPUT may raise ``stdin.PromptExpiredError``: the limit passed at the prompt.
        """
        if kind == STREAM:
            self.text(*fields)
            return
        self.drain()
        self.flush()
        if kind == INPUT:
            self.reply(answer(*fields, deadline=self.deadline))
            return
        try:
            if kind == FILES:
                move_to(*fields)
                return
            if self._shell is None or not _streams.can_display():  # displays go where text goes
                return
            if kind == DISPLAY:
                data, metadata, transient, update = fields
                self._shell.display_pub.publish(data, metadata, transient=transient, update=update)
            elif kind == CLEAR:
                self._shell.display_pub.clear_output(*fields)
            elif kind == IOPUB:
                publish(self._shell, *fields)
        finally:
            self.shown()
