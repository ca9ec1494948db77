"""The guard process (run as a script, standard library only): kills a child's process group the
moment the process that forked the child dies, however it died (SIGKILL included).

Started once per kernel by guard.py. Each forked child sends it, over a datagram socket, its process
group and the read end of a *watch pipe* whose write end only its parent holds. End of file on that
pipe means the parent is gone: the guard SIGKILLs the group. A byte on it means the parent finished
with the child normally: the watch is dropped. Nested levels chain: when a fork child dies, the
watches it held end too, so its own children's groups go next, at any depth. The guard leaves once
the process that started it has died and nothing is left to watch.
"""

import contextlib
import os
import selectors
import signal
import socket
import sys


def main(ctrl_fd: int, life_fd: int) -> None:
    if os.fork():  # nobody's child: the kernel reaps the first process at once, this one lives on
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's interrupt is not for us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ctrl = socket.socket(fileno=ctrl_fd)
    selector = selectors.DefaultSelector()
    selector.register(ctrl, selectors.EVENT_READ, "ctrl")
    selector.register(life_fd, selectors.EVENT_READ, "life")
    watches: dict[int, int] = {}  # watch pipe read end -> process group to kill when it ends
    alive = True
    while alive or watches:
        for key, _ in selector.select():
            if key.data == "ctrl":
                _register(ctrl, selector, watches)
            elif key.data == "life":
                if not os.read(life_fd, 64):
                    alive = False
                    selector.unregister(life_fd)
            elif key.fd in watches:
                _watch_ended(key.fd, selector, watches)
        if not alive and not watches:  # a registration may be in flight from a dying level
            ctrl.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    _register(ctrl, selector, watches)
            ctrl.setblocking(True)


def _register(ctrl: socket.socket, selector: selectors.BaseSelector, watches: dict[int, int]) -> None:
    message, fds, _flags, _addr = socket.recv_fds(ctrl, 64, 4)
    if message.startswith(b"W") and len(fds) == 1:
        watches[fds[0]] = int(message[1:])
        selector.register(fds[0], selectors.EVENT_READ)
    else:  # a ping (b"P") or something malformed
        for fd in fds:
            os.close(fd)


def _watch_ended(fd: int, selector: selectors.BaseSelector, watches: dict[int, int]) -> None:
    pgid = watches.pop(fd)
    if not os.read(fd, 64):  # the parent died without releasing the child: its group goes now
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    selector.unregister(fd)
    os.close(fd)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
