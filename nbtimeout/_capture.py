"""Output of a forked child: routed into the Pipe in the child, replayed into the cell in the kernel.

Python-level output (``print``, ``sys.stderr``, ``display``, ``clear_output``) travels as messages on
the Pipe, so it keeps its order. Raw writes to fd 1/2 (C code, subprocesses) go through two OS
pipes that the kernel reads directly.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
from multiprocessing.connection import Connection
from typing import Any

from ._protocol import CLEAR, DISPLAY, STREAM


class PipeStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the child: every write is a message to the kernel."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn, self.name = conn, name

    def write(self, text: str) -> int:
        if text:
            self._conn.send((STREAM, self.name, str(text)))
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # subprocess and faulthandler want a real descriptor
        return 1 if self.name == "stdout" else 2


class PipePublisher:
    """The child's display publisher: ``display()``, updates and ``clear_output`` as messages."""

    is_publishing = False

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def publish(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *,
                transient: dict[str, Any] | None = None, update: bool = False, **_: Any) -> None:
        self._conn.send((DISPLAY, data, metadata or {}, transient or {}, update))

    def clear_output(self, wait: bool = False) -> None:
        self._conn.send((CLEAR, wait))

    def __getattr__(self, name: str) -> Any:  # anything else IPython asks of a publisher
        raise AttributeError(name)


def route_child_output(conn: Connection, out_fd: int, err_fd: int, shell: Any) -> None:
    """In the child, before user code: point fd 1/2, sys streams and display at the kernel."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    streams = {"stdout": PipeStream(conn, "stdout"), "stderr": PipeStream(conn, "stderr")}
    for name, stream in streams.items():
        old = getattr(sys, name)
        # Loggers and others may hold the kernel's own stream object: make it write here too.
        if hasattr(old, "pub_thread"):
            old.write, old.flush = stream.write, stream.flush
        setattr(sys, name, stream)
    if shell is None:
        return
    publisher = PipePublisher(conn)
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


class Replay:
    """In the kernel: write what the child sent into the current cell, in order."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}

    def raw(self, name: str, data: bytes) -> None:
        """Bytes read from the child's fd 1 or 2."""
        text = self._decoders[name].decode(data, final=not data)
        if text:
            self.text(name, text)

    def text(self, name: str, text: str) -> None:
        getattr(sys, name).write(text)

    def message(self, kind: str, *fields: Any) -> None:
        """A STREAM, DISPLAY or CLEAR message."""
        if kind == STREAM:
            self.text(*fields)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        if self._shell is None:
            return
        if kind == DISPLAY:
            data, metadata, transient, update = fields
            self._shell.display_pub.publish(data, metadata, transient=transient, update=update)
        elif kind == CLEAR:
            self._shell.display_pub.clear_output(*fields)
