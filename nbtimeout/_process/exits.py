"""When a forked child ended, and how: without polling, and whatever the program did with SIGCHLD.

Two channels per child. The exit event: a pidfd where there is one (readable exactly when the child
exits), else the end of a *status pipe* whose write end only the child holds (see ownfds.py), which
the kernel sees the moment the child is gone. The exit status: ``waitpid`` on our own pid only, never
``-1``. If the program set SIGCHLD to ``SIG_IGN`` the system reaps our child itself, and a program's
reaping handler may reap it first; either way ``waitpid`` raises ``ChildProcessError`` and the status
is lost, so the child also reports its exit code on the status pipe as it leaves (``os._exit`` is
wrapped in the child), and a fatal signal is read off faulthandler's dump where there is one.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
from typing import NoReturn

from . import ownfds
from .facilities import HAS_PIDFD

_status: dict[int, int] = {}  # pid -> read end of its status pipe, in the parent
_codes: dict[int, int] = {}  # pid -> the exit code it reported, once read
_REAL_EXIT = os._exit
_report: tuple[int, int] | None = None  # (pid, status pipe write end) in a child


def before_fork() -> tuple[int, int]:
    return os.pipe()


def in_child(pipe: tuple[int, int]) -> None:  # pragma: no cover - runs in the child
    global _report
    _status.clear()  # the parent's children, not ours; their fds were closed by ownfds
    _codes.clear()
    os.close(pipe[0])
    _report = (os.getpid(), ownfds.hold(pipe[1]))
    os._exit = _reporting_exit  # type: ignore[assignment]


def in_parent(pid: int, pipe: tuple[int, int]) -> None:
    os.close(pipe[1])
    _status[pid] = ownfds.hold(pipe[0])


def _reporting_exit(code: int) -> NoReturn:  # pragma: no cover - runs in the child
    """``os._exit`` in a child: tell the parent the code first (its status may never reach it)."""
    if _report is not None and _report[0] == os.getpid():  # not in a process forked from the child
        with contextlib.suppress(Exception):
            os.write(_report[1], bytes([code & 0xFF]))
    _REAL_EXIT(code)


def exit_fd(pid: int) -> int:
    """A new descriptor, the caller's to close, readable once ``pid`` has exited or, on the status
    pipe, is leaving (it reported its code: ``reap`` lets it finish before it kills the group)."""
    return os.pidfd_open(pid) if HAS_PIDFD else os.dup(_status[pid])


def exited(fd: int, timeout: float | None) -> bool:
    """Whether the child behind ``fd`` (from ``exit_fd``) exits within ``timeout`` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def known(pid: int) -> bool:
    """``pid`` is a child of ours not reaped yet."""
    return pid in _status


def settle(pid: int) -> None:
    """Before killing ``pid``'s group: a child that reported its exit code is leaving; let it
    finish (end of file on its status pipe), or the kill would become its cause of death."""
    fd = _status[pid]
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 16)
    except BlockingIOError:  # it said nothing: alive, or killed by a signal
        return
    if data:
        _codes[pid] = data[-1]
        exited(fd, 1.0)  # microseconds; bounded in case a C-level fork of it holds the pipe


def collect(pid: int) -> tuple[int | None, int | None]:
    """Reap ``pid`` (blocking until it exits): (signal number or None, exit code or None).

    The exit code is ``os.waitstatus_to_exitcode``'s: minus the signal for a killed child. Both are
    None when the status was lost and the child reported nothing (killed by a signal, or it left
    from C). The caller kills the child's group first: a zombie keeps its pid from being reused.
    """
    fd = _status.pop(pid)
    try:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped by the system (SIGCHLD ignored) or the program's handler
            return None, _codes.pop(pid) if pid in _codes else _reported(fd)
        _codes.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        return (-code if code < 0 else None), code
    finally:
        ownfds.close(fd)


def _reported(fd: int) -> int | None:
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 16)
    except OSError:  # still held open by something the child forked: it said nothing either
        return None
    return data[-1] if data else None


_FATAL = {text: getattr(signal, name) for text, name in (
    ("Segmentation fault", "SIGSEGV"), ("Floating-point exception", "SIGFPE"),
    ("Floating point exception", "SIGFPE"), ("Aborted", "SIGABRT"), ("Bus error", "SIGBUS"),
    ("Illegal instruction", "SIGILL")) if hasattr(signal, name)}


def signal_in_dump(text: str) -> int | None:
    """The fatal signal named by a faulthandler dump (``Fatal Python error: Segmentation fault``)."""
    match = re.search(r"Fatal Python error: ([^\n]+)", text)
    return _FATAL.get(match.group(1).strip()) if match else None
