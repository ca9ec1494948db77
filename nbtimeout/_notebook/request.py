"""A limit that arrives with the execute request (``metadata["nbtimeout"]``), not in the source.

Clients that know a cell's limit from the notebook's metadata (``nbtimeout run``, the papermill
engine, the JupyterLab extension) send it with the request; ipykernel keeps the request being handled
as the kernel's parent, so the every-cell hook can read it while it transforms the cell. The source
sent stays as typed and line numbers stay the user's; ``In[n]`` holds the added magic line, as under
``%timeout`` (an open gap of issue 21).
"""

from __future__ import annotations

from typing import Any

from .._limits import SPEC_KEY, magic_line


def requested_line(shell: Any) -> str | None:
    """The ``%%timeout`` arguments the request being executed asks for, or None."""
    get_parent = getattr(getattr(shell, "kernel", None), "get_parent", None)
    if get_parent is None:  # terminal IPython, or a kernel too old to say
        return None
    try:
        parent = get_parent("shell")
    except TypeError:  # ipykernel before the channel argument
        parent = get_parent()
    if not isinstance(parent, dict) or parent.get("header", {}).get("msg_type") != "execute_request":
        return None
    spec = (parent.get("metadata") or {}).get(SPEC_KEY)
    if not isinstance(spec, dict) or spec.get("timeout") is None:
        return None
    return magic_line(spec)
