"""How an error that leaves a timed cell is shown: from the user's first frame to the user's line.

Without nbtimeout IPython shows a cell's error from the cell's own frame down. A timed cell's code is
``get_ipython().run_cell_magic('timeout', …)``, a line the user never typed, then nbtimeout's frames,
then the body; and a stop may land after the body's last line (C code returned, the alarm fired in
our frame) or inside a library the body called (``print`` into ipykernel and zmq). IPython asks an
exception for ``_render_traceback_`` before formatting it: the error gets one, for one showing,
that formats only the frames the user wrote or called, with IPython's own formatter.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .._errors import BudgetSpentError, CellCrashedError, CellResultError, CellTimeoutError, _Expired
from .._traceback import attach
from .._where import PACKAGE_DIR, cell_number

# Installed code: what a stop that landed inside it is trimmed back from (to the user's own line).
_LIBRARIES = tuple(sorted({os.path.join(p, "") for p in
                           (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib"))
                           if p}, key=len, reverse=True))
_OURS = (CellTimeoutError, CellCrashedError, CellResultError)  # nbtimeout's errors: no frame of ours is news


def _is_stop(error: BaseException) -> bool:
    return isinstance(error, (CellTimeoutError, _Expired))


def _users(filename: str) -> bool:
    """Code the user wrote: a cell, or a file outside the installed packages and the stdlib."""
    if filename.startswith(PACKAGE_DIR):
        return False
    return cell_number(filename) is not None or not filename.startswith(_LIBRARIES)


def place_stop(error: BaseException, filename: str, line: int | None, namespace: dict[str, Any]) -> None:
    """A stop with no frame of the cell (it landed after the body's last line, once C code returned)
    points at the body's last statement, ``line`` of ``filename``, so it says where it stopped."""
    if not isinstance(error, CellTimeoutError) or isinstance(error, BudgetSpentError) or line is None \
            or error.engine == "fork":  # a spent budget: the cell did not run; fork: only the child knows
        return
    entries = _entries(error.__traceback__)
    if not entries or _body_start(entries, filename) is not None:
        return
    holder = attach(BaseException(), [(filename, line, "<module>")], [(namespace, namespace, None, line, (line,))])
    # Appended, not replaced: contextlib puts back the traceback an exception had as it was thrown in.
    entries[-1].tb_next = holder.__traceback__


def show_as_typed(error: BaseException, filename: str, shell: Any) -> None:
    """Give ``error`` a one-time ``_render_traceback_`` that shows the frames from the cell's
    body (``filename``) down: a stop ends at the user's last line, any other error goes on into
    the libraries as it would without the limit. An error with its own renderer keeps it."""
    if isinstance(error, SyntaxError) or hasattr(error, "_render_traceback_"):
        return
    render = getattr(getattr(shell, "InteractiveTB", None), "structured_traceback", None)
    if render is None:
        return
    if _body_start(_entries(error.__traceback__), filename) is None and not isinstance(error, _OURS):
        return  # not the cell's: shown as IPython shows it
    try:
        error._render_traceback_ = _Once(error, render, filename)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # a class with __slots__: IPython's own view
        pass


class _Once:
    """The renderer, removed from the error as it is used (a re-raise later shows as usual)."""

    def __init__(self, error: BaseException, render: Callable[..., list[str]], filename: str) -> None:
        self.error, self.render, self.filename = error, render, filename

    def __call__(self) -> list[str]:
        error = self.error
        error.__dict__.pop("_render_traceback_", None)
        return self.render(type(error), error, view(error, self.filename), tb_offset=0)


def _entries(tb: TracebackType | None) -> list[TracebackType]:
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    return entries


def _body_start(entries: list[TracebackType], filename: str) -> int | None:
    """Where the user's frames start: the body's first, after nbtimeout's (the cell's outer code,
    ``run_cell_magic(…)``, has the same file name: IPython names it by the cell); else the first
    frame of the user's own code after nbtimeout's (a stop caught by ``%run`` has only the script's)."""
    ours = next((i for i, tb in enumerate(entries) if tb.tb_frame.f_code.co_filename.startswith(PACKAGE_DIR)), None)
    if ours is None:
        return None
    files = [tb.tb_frame.f_code.co_filename for tb in entries]
    body = next((i for i in range(ours, len(entries)) if files[i] == filename), None)
    if body is not None:
        return body
    return next((i for i in range(ours, len(entries)) if _users(files[i])), None)


def view(error: BaseException, filename: str) -> TracebackType | None:
    """A copy of the frames of ``error`` that the user should see (its traceback is left as it is)."""
    entries = _entries(error.__traceback__)
    first = _body_start(entries, filename)
    shown = entries[len(entries) if first is None else first:]
    if _is_stop(error):
        users = [i for i, tb in enumerate(shown) if _users(tb.tb_frame.f_code.co_filename)]
        shown = shown[:users[-1] + 1] if users else []
    else:
        while shown and shown[-1].tb_frame.f_code.co_filename.startswith(PACKAGE_DIR):
            shown.pop()  # what raised it on our way out (a re-raise of the cell's error)
    tb = None
    for entry in reversed(shown):
        tb = TracebackType(tb, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return tb
