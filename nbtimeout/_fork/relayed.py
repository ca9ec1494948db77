"""The kernel's keeper of a widget a fork child made: its last state, for the front end's later asks.

The widget object lived in the child and is gone with it, but its view stays on screen. When the
front end asks the kernel for its widgets' state (a page reload sends ``request_states`` on
ipywidgets' control comm; a new view of one model sends ``request_state``), the kernel answers from
ipywidgets' registry of widgets. A keeper stands in that registry for each widget the child opened
and did not close, with the state the child last sent, updated by what the front end sends (a slider
dragged after the cell): so the widget comes back as it was. It is not a Widget: it offers what
ipywidgets' registry is asked for (``get_state``, the model's name, module and version, ``close``).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

_WIDGETS = "ipywidgets.widgets.widget"


class Keeper:
    """A child's widget's last state, registered where ipywidgets looks for the kernel's widgets."""

    def __init__(self, comm: Any, state: dict[str, Any]) -> None:
        self.comm, self._state = comm, state
        self.model_id = self._model_id = comm.comm_id
        self._model_name = state.get("_model_name", "WidgetModel")
        self._model_module = state.get("_model_module", "@jupyter-widgets/base")
        self._model_module_version = state.get("_model_module_version", "")
        comm.on_msg(self._from_front_end)
        comm.on_close(lambda _msg: self.forget())

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
        return copy.copy(self._state)

    def _get_embed_state(self, drop_defaults: bool = False) -> dict[str, Any]:
        return sys.modules[_WIDGETS].Widget._get_embed_state(self, drop_defaults)

    def _from_front_end(self, msg: dict[str, Any]) -> None:
        data = msg["content"].get("data") or {}
        if data.get("method") in ("update", "echo_update"):
            _merge(self._state, data, msg.get("buffers"))
        elif data.get("method") == "request_state":
            state, paths, buffers = sys.modules[_WIDGETS]._remove_buffers(self.get_state())
            self.comm.send({"method": "update", "state": state, "buffer_paths": paths}, buffers=buffers)

    def close(self) -> None:
        """As ``Widget.close``: the front end's view goes, and so does the record."""
        self.forget()
        self.comm.close()

    def forget(self) -> None:
        sys.modules[_WIDGETS]._instances.pop(self.model_id, None)


def _merge(state: dict[str, Any], data: dict[str, Any], buffers: list[Any] | None) -> None:
    """Merge an ``update`` message's (or a ``comm_open``'s) state, buffers put back, into ``state``."""
    paths = data.get("buffer_paths") or []
    new = (copy.deepcopy if paths else copy.copy)(data.get("state") or {})
    sys.modules[_WIDGETS]._put_buffers(new, paths, buffers or [])
    state.update(new)


def _keeper(comm_id: str) -> Keeper | None:
    widgets = sys.modules.get(_WIDGETS)
    found = widgets._instances.get(comm_id) if widgets is not None else None
    return found if isinstance(found, Keeper) else None


def keep(comm: Any, content: dict[str, Any], buffers: list[Any] | None) -> None:
    """Register a keeper for a child's ``comm_open`` of a widget, if ipywidgets is in the kernel."""
    if content.get("target_name") != "jupyter.widget":
        return
    try:
        # The child imported ipywidgets, so the kernel would have: its control comm is what the
        # front end asks after a reload (the sync imports it at the end of the cell; this is sooner)
        import ipywidgets  # noqa: F401
    except ImportError:
        return
    widgets = sys.modules[_WIDGETS]
    state: dict[str, Any] = {}
    _merge(state, content.get("data") or {}, buffers)
    widgets._instances[comm.comm_id] = Keeper(comm, state)


def child_message(msg_type: str, content: dict[str, Any], buffers: list[Any] | None) -> None:
    """A child's ``comm_msg`` or ``comm_close`` for one of its widgets: the keeper follows it."""
    keeper = _keeper(content.get("comm_id", ""))
    if keeper is None:
        return
    data = content.get("data") or {}
    if msg_type == "comm_close":
        keeper.forget()
    elif data.get("method") in ("update", "echo_update"):
        _merge(keeper._state, data, buffers)
