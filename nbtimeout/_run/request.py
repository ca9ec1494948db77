"""Send an execute request that carries a cell's limit in its metadata (``nbtimeout._limits``)."""

from __future__ import annotations

from typing import Any

from .._limits import SPEC_KEY


def execute(client: Any, code: str, spec: dict[str, Any] | None, **content: Any) -> str:
    """``client.execute(code, **content)``, with ``spec`` under the request's ``metadata["nbtimeout"]``.

    ``client`` is a jupyter_client kernel client; returns the request's msg_id, as ``execute`` does.
    jupyter_client's ``execute`` takes no metadata, so the message is built here as it builds it.
    """
    if spec is None:
        return client.execute(code, **content)
    fields = {"silent": False, "store_history": True, "user_expressions": {},
              "allow_stdin": getattr(client, "allow_stdin", False), "stop_on_error": True, **content}
    msg = client.session.msg("execute_request", {"code": code, **fields}, metadata={SPEC_KEY: spec})
    client.shell_channel.send(msg)
    return msg["header"]["msg_id"]
