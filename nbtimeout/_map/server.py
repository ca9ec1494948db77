"""Task servers on an executor's worker: the fork children that run ``nbtimeout.map(executor=...)``'s tasks.

A server is a process forked from the worker that runs tasks one after another (``worker.serve``).
A worker thread with a task takes an idle server, or forks one, sends it the task and waits on its
socket, fd 1/2 pipes and exit against the task's deadline. Past it: SIGTERM (the server dumps its
Python stack first, so the error says where it was, even in C code), ``grace``, SIGKILL to its
process group; that server is gone and the next task forks another. A crash takes down only the
server. The worker itself never runs a task, so it lives on. One fork per server rather than per
task keeps a task's cost near a socket round trip; a server idle for ``IDLE`` seconds is closed,
so nothing of a map stays behind on the worker for long.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import cloudpickle

from .._fork.capture import read_dry
from .._process.channels import Ends, fork_with_channels
from .._process.forking import exited, reap
from . import ended
from .carry import Parcel, error_parcel
from .outcome import CRASHED, FINISHED, STOPPED
from .worker import RESULT, serve

IDLE = 1.0  # seconds an idle server waits for another task before it is closed
MAX_OUTPUT = 1 << 20  # characters of a task's output kept: they travel in one message with its result
DROPPED = "\n[nbtimeout: the rest of this task's output was dropped]\n"


@dataclass(eq=False)
class Server:
    pid: int
    conn: Connection
    fds: dict[int, str]  # read ends of its fd 1/2 pipes -> "stdout"/"stderr"
    stack: int  # read end of the pipe its stack dumps go to
    exit: int  # readable once it has exited
    memory: int | None
    known: set[bytes] = field(default_factory=set)  # digests of the functions it has loaded
    idle_since: float = 0.0


_idle: list[Server] = []
_lock = threading.Lock()
_sweeper: threading.Thread | None = None


def run(fn_blob: bytes, item_blob: bytes, limit: float, grace: float, memory: int | None,
        output: list[tuple[str, str]], started: Callable[[int], None]) -> tuple[Parcel, float]:
    """Run one task on a server: its Parcel and the seconds it ran; what it printed goes to ``output``."""
    server = _checkout(memory)
    started(server.pid)
    digest = hashlib.blake2b(fn_blob, digest_size=16).digest()
    with contextlib.suppress(OSError):  # killed already (its map was cancelled): its exit says so
        server.conn.send((digest, None if digest in server.known else fn_blob, item_blob))
    begin = time.monotonic()
    parcel, elapsed = _wait(server, begin, limit, grace, output)
    if parcel[0] == FINISHED:
        server.known.add(digest)  # it has fn now; a task that failed may have failed to load it
    return parcel, elapsed


def _task_for(message: tuple[bytes, bytes | None, bytes]) -> Callable[[], Any]:  # pragma: no cover
    """In the server: the call for one task message; fn is unpickled once per server."""
    digest, fn_blob, item_blob = message

    def call() -> Any:
        fn = _functions[digest] if fn_blob is None else cloudpickle.loads(fn_blob)
        _functions[digest] = fn
        return fn(cloudpickle.loads(item_blob))
    return call


_functions: dict[bytes, Callable[[Any], Any]] = {}  # in a server: digest -> fn


def _wait(server: Server, begin: float, limit: float, grace: float,
          output: list[tuple[str, str]]) -> tuple[Parcel, float]:
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in server.fds.values()}

    kept = [0]

    def write(name: str, data: bytes) -> None:
        text = decoders[name].decode(data, final=not data)
        if text and kept[0] < MAX_OUTPUT:
            kept[0] += len(text)
            if kept[0] >= MAX_OUTPUT:
                text = text[:len(text) - (kept[0] - MAX_OUTPUT)] + DROPPED
            output.append((name, text))

    deadline, stopping = begin + limit, None
    with selectors.DefaultSelector() as selector:
        for fd in (server.conn.fileno(), server.exit, *server.fds):
            selector.register(fd, selectors.EVENT_READ)
        while True:
            ready = {key.fd for key, _ in selector.select(max(0.0, deadline - time.monotonic()))}
            for fd, name in server.fds.items():
                if fd in ready and read_dry(fd, lambda data, name=name: write(name, data)):
                    selector.unregister(fd)
            parcel = _answer(server) if server.conn.fileno() in ready else None
            if parcel is not None:
                _drain(server, write)
                elapsed = time.monotonic() - begin
                if stopping is None:
                    _checkin(server)
                else:  # it answered just as it was told to stop: it is dying
                    _close(server)
                return parcel, elapsed
            if server.exit in ready:  # on our SIGTERM, or on its own: a crash
                return _ended(server, begin, limit, stopping is not None, write)
            if time.monotonic() >= deadline:
                if stopping is None and grace > 0:
                    stopping = time.monotonic()
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(server.pid, signal.SIGTERM)  # the server alone: its stack dump is whole
                    deadline = stopping + grace
                    continue
                return _ended(server, begin, limit, True, write)  # SIGKILL: it ignored SIGTERM


def _answer(server: Server) -> Parcel | None:
    while server.conn.poll():
        try:
            kind, *fields = server.conn.recv()
        except (EOFError, OSError):
            return None  # it died: its exit says so
        if kind == RESULT:
            return fields[0]
    return None


def _drain(server: Server, write: Callable[[str, bytes], None]) -> None:
    for fd, name in server.fds.items():
        read_dry(fd, lambda data, name=name: write(name, data))


def _ended(server: Server, begin: float, limit: float, stopped: bool,
           write: Callable[[str, bytes], None]) -> tuple[Parcel, float]:
    """It was ``stopped`` past its limit, or died on its own: kill what is left, reap, say which."""
    _drain(server, write)
    how, dump = _close(server)
    elapsed = time.monotonic() - begin
    if stopped:
        return error_parcel(ended.stopped(limit, elapsed, dump), STOPPED), elapsed
    return error_parcel(ended.crashed(how, elapsed, dump), CRASHED), elapsed


def _checkout(memory: int | None) -> Server:
    """An idle server with this memory limit, or a new one; one that died while idle is not used."""
    while True:
        with _lock:
            server = next((s for s in reversed(_idle) if s.memory == memory), None)
            if server is None:
                break
            _idle.remove(server)
        if not exited(server.exit, 0):
            return server
        _close(server)  # a thread its last task left behind ended it, or someone killed it
    return _spawn(memory)


def _checkin(server: Server) -> None:
    global _sweeper
    server.idle_since = time.monotonic()
    with _lock:
        _idle.append(server)
        if _sweeper is None or not _sweeper.is_alive():
            _sweeper = threading.Thread(target=_sweep, name="nbtimeout-servers", daemon=True)
            _sweeper.start()


def _sweep() -> None:
    """Close servers idle for IDLE seconds; end once there are none."""
    while True:
        time.sleep(IDLE / 2)
        with _lock:
            now = time.monotonic()
            old = [s for s in _idle if now - s.idle_since >= IDLE]
            for server in old:
                _idle.remove(server)
            last = not _idle
        for server in old:
            _close(server)
        if last:
            with _lock:
                if not _idle:
                    return


def _spawn(memory: int | None) -> Server:
    parent = os.getpid()

    def child(ends: Ends) -> NoReturn:  # pragma: no cover - runs in the server
        serve(ends.conn, _task_for, parent, ends.out, ends.err, None, memory, ends.stack)

    pid, ends, exit_end = fork_with_channels(child)
    return Server(pid, ends.conn, {ends.out: "stdout", ends.err: "stderr"}, ends.stack, exit_end, memory)


def _close(server: Server) -> tuple[tuple[int | None, int | None] | None, str]:
    """Kill what is left of the server's group, reap it, close our ends: ((signal, exit code), the
    stack it dumped if it did)."""
    how = reap(server.pid)
    dump = ended.read_dump(server.stack)
    server.conn.close()
    for fd in (*server.fds, server.stack, server.exit):
        os.close(fd)
    return how, dump
