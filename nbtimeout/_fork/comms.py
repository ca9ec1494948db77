"""Comms (widgets, ``tqdm.auto``) from a forked child: the kernel sends them for it, on iopub.

The child must never touch the kernel's sockets (they are the kernel's, and a copy of a ZMQ socket
used from two processes corrupts both). In the child, ``kernel.session.send`` is replaced: what
would go out on iopub (``comm_open``, ``comm_msg``, ``comm_close``, a nested cell's ``error`` or
``execute_result``) travels over the Pipe instead, with the child's parent header, and the kernel
sends it. Output only: the front end's messages to such a comm reach the kernel, never the child.

So that those messages are not errors in the kernel (a slider moved after the cell, a view closed),
the kernel keeps a record of every comm the child opened and did not close. For a widget the record
also keeps its last state (relayed.py), so a page reload shows it again as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .protocol import IOPUB
from .relayed import child_message, keep


def child_send(post: Callable[[tuple[Any, ...]], None], iopub: list[Any]) -> Callable[..., None]:
    """A ``Session.send`` for the child: iopub messages go to ``post``, other sockets refuse."""

    def send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None, ident: Any = None,
             buffers: Any = None, track: bool = False, header: Any = None, metadata: Any = None) -> None:
        if not any(stream is socket for socket in iopub):
            raise RuntimeError("nbtimeout: a fork cell cannot use the kernel's shell or stdin sockets")
        if isinstance(msg_or_type, dict) and buffers is None:
            buffers = msg_or_type.get("buffers")
        # memoryviews do not pickle; bytes do
        buffers = [bytes(b) for b in buffers] if buffers else None
        post((IOPUB, msg_or_type, content, parent, ident, buffers, header, metadata))

    return send


def iopub_sockets(shell: Any) -> list[Any]:
    """The objects the child may name as iopub: the kernel's, and its display hook's."""
    kernel = shell.kernel
    sockets = [kernel.iopub_socket]
    for owner in (getattr(shell, "displayhook", None), getattr(shell, "display_pub", None)):
        socket = getattr(owner, "pub_socket", None)
        if socket is not None:
            sockets.append(socket)
    return sockets


def publish(shell: Any, msg_or_type: Any, content: Any, parent: Any, ident: Any, buffers: Any,
            header: Any, metadata: Any) -> None:
    """In the kernel: send a child's iopub message as the child meant it, and keep comm records."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return
    kernel.session.send(kernel.iopub_socket, msg_or_type, content, parent=parent, ident=ident,
                        buffers=buffers, header=header, metadata=metadata)
    if isinstance(msg_or_type, dict):
        msg_type, content = msg_or_type["header"]["msg_type"], msg_or_type.get("content")
    else:
        msg_type = msg_or_type
    if msg_type in ("comm_msg", "comm_close") and isinstance(content, dict):
        child_message(msg_type, content, buffers)
    if msg_type in ("comm_open", "comm_close") and isinstance(content, dict):
        _record(kernel, msg_type, content, buffers)


def _record(kernel: Any, msg_type: str, content: dict[str, Any], buffers: Any) -> None:
    manager = getattr(kernel, "comm_manager", None)
    comm_id = content.get("comm_id")
    if manager is None or comm_id is None:
        return
    if msg_type == "comm_close":
        record = manager.comms.pop(comm_id, None)
        if record is not None:
            record._closed = True  # closed by the child already: its finalizer must not close it again
        return
    if comm_id in manager.comms:
        return
    import comm

    # primary=False: the front end has it open already (the child's comm_open); nothing is sent
    record = comm.create_comm(target_name=content.get("target_name", "comm"), comm_id=comm_id,
                              primary=False, target_module=content.get("target_module"))
    manager.register_comm(record)
    keep(record, content, buffers)  # a widget: its last state, for the front end's later asks
