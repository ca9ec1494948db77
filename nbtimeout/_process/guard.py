"""The kernel's side of the guard (guardian.py): start it once, and watch every forked child.

A thread in the child cannot do this job: a child stuck in C code that holds the GIL never lets it
run, and a dead kernel leaves the child nothing to be signalled by on macOS (no PR_SET_PDEATHSIG).
A separate process costs one interpreter start per kernel and one datagram per fork.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading

from . import ownfds

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guardian.py")
# The descriptor of our end of the guard's datagram socket, kept as a bare number (a socket object
# would warn when collected at exit); forked children inherit it and register their own children.
_ctrl: int | None = None
_watches: dict[int, int] = {}  # child pid -> write end of its watch pipe
_session: int | None = None  # the guard leads no group of ours: its session is named for its starter


def session() -> int | None:
    """The guard's session id (``os.getsid`` of the guard process), for tests and bug reports."""
    return _session


_starting = threading.Lock()  # map's executor forks from several threads: one guard, not one each


def ensure() -> bool:
    """Start the guard unless it is running; False if it cannot be started here."""
    with _starting:
        return _ensure()


def _ensure() -> bool:
    global _ctrl, _session
    if _ctrl is not None:
        try:
            _send(b"P")
            return True
        except OSError:  # it died (someone killed it): start another
            os.close(_ctrl)
            _ctrl = None
    if not sys.executable or not hasattr(socket, "send_fds"):
        return False
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    life_r, life_w = os.pipe()
    try:
        guardian = subprocess.Popen(
            [sys.executable, "-I", "-S", _SCRIPT, str(theirs.fileno()), str(life_r)],
            pass_fds=(theirs.fileno(), life_r), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        guardian.wait()  # it forks and leaves at once; its child is the guard, nobody's child
    except OSError:
        ours.close()
        os.close(life_w)
        return False
    finally:
        theirs.close()
        os.close(life_r)
    ownfds.hold(life_w)  # the guard's sign that we live: only this process may hold it
    _ctrl, _session = ours.detach(), guardian.pid
    return True


def before_fork() -> tuple[int, int] | None:
    return os.pipe() if _ctrl is not None else None


def in_child(pipe: tuple[int, int] | None) -> None:  # pragma: no cover - runs in the child
    """In the child, once it leads its group: have the guard kill the group if our parent dies."""
    _watches.clear()  # the parent's, closed by ownfds in this process
    if pipe is None or _ctrl is None:
        return
    read, write = pipe
    os.close(write)
    with contextlib.suppress(OSError):  # no guard: the parent-death signal is all there is
        _send(b"W%d" % os.getpid(), read)
    os.close(read)


def in_parent(pid: int, pipe: tuple[int, int] | None) -> None:
    if pipe is not None:
        os.close(pipe[0])
        _watches[pid] = ownfds.hold(pipe[1])


def _send(message: bytes, fd: int | None = None) -> None:
    assert _ctrl is not None
    sock = socket.socket(fileno=_ctrl)
    try:
        if fd is None:
            sock.send(message)
        else:
            socket.send_fds(sock, [message], [fd])
    finally:
        sock.detach()


def _after_fork_in_child() -> None:
    global _starting
    _starting = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def release(pid: int) -> None:
    """The child is reaped and its group killed: the guard drops it (a byte, then end of file)."""
    fd = _watches.pop(pid, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(fd, b"x")
        ownfds.close(fd)
