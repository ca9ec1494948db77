"""The banner a stopped or crashed cell leaves behind: inline-styled HTML plus a text twin.

Only ``style=`` attributes (JupyterLab strips ``<style>`` and scripts from untrusted output), and the
outcome is told by icon and words, not colour alone, so saved notebooks and dark themes read right.
"""

from __future__ import annotations

import html

from ._errors import CellCrashedError, CellTimeoutError
from ._units import format_duration

# icon, title, accent colour (a left border; the words carry the meaning)
LOOKS = {
    "finished": ("✔", "Finished", "#2e7d32"),
    "stopped": ("⏱", "Stopped", "#c62828"),
    "continued": ("⏱", "Stopped (continuing)", "#ef6c00"),
    "crashed": ("💥", "Crashed", "#6a1b9a"),
    "failed": ("✖", "Failed", "#c62828"),
}


def describe(error: BaseException, keep_going: bool = False) -> tuple[str, str]:
    """``(state, one-line text)`` for a timeout or crash error."""
    if isinstance(error, CellTimeoutError):
        state = "continued" if keep_going else "stopped"
        text = (f"%%timeout stopped this cell after {format_duration(error.elapsed)} "
                f"(limit {format_duration(error.limit)}, {error.engine} engine)")
    elif isinstance(error, CellCrashedError):
        state = "crashed"
        text = f"%%timeout: the {error.engine} child {error.how} after {format_duration(error.elapsed)}"
    else:
        state, text = "failed", f"{type(error).__name__}: {error}"
    where = getattr(error, "where", None)
    if where:
        text += f" at {where}"
    return state, text + ("; continuing" if keep_going else "")


def bundle(error: BaseException, keep_going: bool = False) -> dict[str, str]:
    """The MIME bundle of the banner: ``text/plain`` and ``text/html``."""
    state, text = describe(error, keep_going)
    icon, title, colour = LOOKS[state]
    page = (
        f'<div style="border-left:6px solid {colour};padding:6px 10px;margin:4px 0;'
        f'font-family:var(--jp-ui-font-family,sans-serif);background:rgba(127,127,127,0.08);'
        f'color:inherit" data-nbtimeout="{state}">'
        f'<b style="color:{colour}">{icon} {title}</b> '
        f'<span>{html.escape(text)}</span></div>'
    )
    return {"text/plain": f"{icon} {title}: {text}", "text/html": page}


def show(error: BaseException, keep_going: bool = False) -> None:
    """Display the banner in the current cell."""
    from IPython.display import display

    display(bundle(error, keep_going), raw=True)
