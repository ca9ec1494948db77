"""The banner a stopped or crashed cell leaves behind: inline-styled HTML plus a text twin.

Only ``style=`` attributes (JupyterLab strips ``<style>`` and scripts from untrusted output), and the
outcome is told by icon and words, not colour alone, so saved notebooks and dark themes read right.
The measured time varies from run to run: ``notebooks/nbval-sanitize.cfg`` masks it (``after …``).
"""

from __future__ import annotations

import html

from .._errors import CellCrashedError, CellTimeoutError
from .._units import format_duration

# icon, title, accent colour (a left border and the title; the words carry the meaning). The
# colours are mid-tones that stay legible on both JupyterLab's light and dark backgrounds. The icons
# are in DejaVu, so they render without an emoji font (headless browsers, many Linux desktops).
LOOKS = {
    "finished": ("✔", "Finished", "#43a047"),
    "stopped": ("■", "Stopped", "#e53935"),
    "continued": ("■", "Stopped (continuing)", "#fb8c00"),
    "crashed": ("☠", "Crashed", "#8e24aa"),
    "failed": ("✖", "Failed", "#e53935"),
    "interrupted": ("⚠", "Interrupted", "#fb8c00"),
}
NO_WHERE = "line unknown: the child died before it could report its stack"


def _parts(error: BaseException, keep_going: bool) -> tuple[str, str, str | None]:
    """``(state, what happened, where)``."""
    where = getattr(error, "where", None)
    if isinstance(error, CellTimeoutError):
        state = "continued" if keep_going else "stopped"
        text = (f"%%timeout stopped this cell after {format_duration(error.elapsed)} "
                f"(limit {format_duration(error.limit)}, {error.engine} engine)")
        if keep_going:
            text += "; the notebook goes on (--continue)"
    elif isinstance(error, CellCrashedError):
        state = "crashed"
        text = (f"the {error.engine} child running this cell {error.how} after "
                f"{format_duration(error.elapsed)} ({error.engine} engine); the kernel is unharmed")
        where = where or NO_WHERE
    else:
        state, text = "failed", f"{type(error).__name__}: {error}"
    return state, text, where


def describe(error: BaseException, keep_going: bool = False) -> tuple[str, str]:
    """``(state, one-line text)`` for a timeout or crash error."""
    state, text, where = _parts(error, keep_going)
    return state, text + (f"; at {where}" if where else "")


def bundle(error: BaseException, keep_going: bool = False) -> dict[str, str]:
    """The MIME bundle of the banner: one-line ``text/plain`` and ``text/html`` (two lines)."""
    state, text, where = _parts(error, keep_going)
    icon, title, colour = LOOKS[state]
    plain = f"{icon} {title}: {text}" + (f"; at {where}" if where else "")
    where_html = (f'<div style="margin-top:2px;font-family:var(--jp-code-font-family,monospace);'
                  f'font-size:90%;opacity:0.85">at {html.escape(where)}</div>') if where else ""
    page = (
        f'<div style="border-left:6px solid {colour};padding:6px 10px;margin:4px 0;'
        f'font-family:var(--jp-ui-font-family,sans-serif);background:rgba(127,127,127,0.1);'
        f'color:inherit" data-nbtimeout="{state}" title="nbtimeout: {title.lower()}">'
        f'<div><b style="color:{colour}">{icon} {title}</b> '
        f'<span>{html.escape(text)}</span></div>{where_html}</div>'
    )
    return {"text/plain": plain, "text/html": page}


def show(error: BaseException, keep_going: bool = False) -> None:
    """Display the banner in the current cell."""
    from IPython.display import display

    display(bundle(error, keep_going), raw=True)
