"""How a timed cell looks, live and after: one inline-styled HTML line plus its ``text/plain`` twin.

Only ``style=`` attributes (JupyterLab strips ``<style>`` and scripts from untrusted output). The
text keeps the page's own colour (``color:inherit``) and sits on a faint tint of the state's accent,
so it reads at well over 4.5:1 on light and dark themes alike; the accent marks only the left
border and the progress bar, and the outcome is told by icon and words, not colour alone.
``notebooks/nbval-sanitize.cfg`` masks what varies from run to run (times, the live line).
"""

from __future__ import annotations

import html

from .._errors import BUDGET_RAN_OUT, OVERRAN, BudgetSpentError, CellCrashedError, CellTimeoutError
from .._palette import COLOURS
from .._units import format_duration

# icon, title, accent. The icons are in DejaVu, so they render without an emoji font.
LOOKS = {
    "running": ("◷", "Running", COLOURS["running"]),
    "finished": ("✔", "Finished", COLOURS["finished"]),
    "stopped": ("■", "Stopped", COLOURS["stopped"]),
    "continued": ("■", "Stopped (continuing)", COLOURS["stopped"]),
    "crashed": ("☠", "Crashed", COLOURS["crashed"]),
    "failed": ("✖", "Failed", COLOURS["failed"]),
    "interrupted": ("⚠", "Interrupted", COLOURS["interrupted"]),
    "spent": ("■", "Budget spent", COLOURS["stopped"]),
}
TINT = 0.14  # opacity of the accent behind the text: the text stays the theme's own colour
NO_WHERE = "line unknown: the child died before it could report its stack"
OVERRUN_NOTE = 0.25  # seconds past the limit from which a signal cell's banner explains the delay
_RUN_ON = {"running", "finished", "failed", "interrupted"}  # their text goes on from the title
SLOT = "data-nbtimeout-slot"  # marks the line that first was the live countdown (nbval masks it)


def _rgba(accent: str, alpha: float) -> str:
    red, green, blue = (int(accent[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _page(state: str, text: str, where: str | None, slot: str | None, fill: float | None) -> str:
    icon, title, accent = LOOKS[state]
    head = f'{SLOT}="{html.escape(slot)}" ' if slot else ""
    bar = "" if fill is None else (
        '<div style="height:4px;max-width:240px;margin-top:4px;background:rgba(127,127,127,0.3)">'
        f'<div style="height:4px;width:{fill * 100:.0f}%;background:{accent}"></div></div>')
    where_html = (f'<div style="margin-top:2px;font-family:var(--jp-code-font-family,monospace);'
                  f'font-size:90%">at {html.escape(where)}</div>') if where else ""
    return (
        f'<div {head}data-nbtimeout="{state}" title="nbtimeout: {title.lower()}" '
        f'style="border-left:4px solid {accent};padding:4px 10px;margin:2px 0;'
        f'background:{_rgba(accent, TINT)};color:inherit;font-family:var(--jp-ui-font-family,sans-serif)">'
        f'<div><b>{icon} {title}</b> <span>{html.escape(text)}</span></div>{bar}{where_html}</div>'
    )


def line(state: str, text: str, where: str | None = None, slot: str | None = None,
         fill: float | None = None) -> dict[str, str]:
    """The MIME bundle of one state line: ``text/plain`` on one line, ``text/html``."""
    icon, title, _ = LOOKS[state]
    plain = f"{icon} {title}{'' if state in _RUN_ON else ':'} {text}" + (f"; at {where}" if where else "")
    return {"text/plain": plain, "text/html": _page(state, text, where, slot, fill)}


def _limit(limit: float, engine: str, budget: float | None) -> str:
    if budget:  # the limit was what the budget had left: a number that differs from run to run
        return f"limit: what was left of the {format_duration(budget)} budget, {engine} engine"
    return f"limit {format_duration(limit)}, {engine} engine"


def late(elapsed: float, limit: float, engine: str) -> bool:
    """Whether an in-kernel run went on well past its limit (its alarm waited for C code)."""
    return engine != "fork" and elapsed - limit >= OVERRUN_NOTE


def ended(error: BaseException | None, elapsed: float, limit: float, engine: str,
          keep_going: bool = False, budget: float | None = None,
          origin: str = "%%timeout") -> tuple[str, str, str | None]:
    """``(state, text, where)`` of a run that ended with ``error`` (None: it finished); ``origin``
    names the limit that stopped it: ``%%timeout``, ``%timeout 30 for every cell``, the budget."""
    where = getattr(error, "where", None)
    if error is None:
        text = f"in {format_duration(elapsed)} ({_limit(limit, engine, budget)})"
        if late(elapsed, limit, engine):  # C code ran past the alarm to the cell's end
            text += "; " + OVERRAN.format(overrun=format_duration(elapsed - limit), engine=engine)
        return "finished", text, None
    if isinstance(error, BudgetSpentError):
        return "spent", str(error), None  # with -c too: the cell did not run at all
    if isinstance(error, CellTimeoutError):
        text = (f"{origin} stopped this cell after {format_duration(error.elapsed)} "
                f"({_limit(error.limit, error.engine, budget)})")
        if budget and error.limit < budget:
            text += "; " + BUDGET_RAN_OUT.format(budget=format_duration(budget))
        if late(error.elapsed, error.limit, error.engine):
            text += "; " + OVERRAN.format(overrun=format_duration(error.elapsed - error.limit), engine=error.engine)
        if keep_going:
            text += "; the notebook goes on (--continue)"
        return ("continued" if keep_going else "stopped"), text, where
    if isinstance(error, CellCrashedError):
        text = (f"the {error.engine} child running this cell {error.how} after "
                f"{format_duration(error.elapsed)} ({error.engine} engine); the kernel is unharmed")
        return "crashed", text, where or NO_WHERE
    state = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    name = "" if state == "interrupted" else f"({type(error).__name__}) "
    return state, f"{name}after {format_duration(elapsed)} ({_limit(limit, engine, budget)})", None


def describe(error: BaseException, keep_going: bool = False) -> tuple[str, str]:
    """``(state, one-line text)`` for a timeout or crash error."""
    state, text, where = ended(error, getattr(error, "elapsed", 0.0), getattr(error, "limit", 0.0),
                               getattr(error, "engine", "signal"), keep_going)
    return state, text + (f"; at {where}" if where else "")


def bundle(error: BaseException, keep_going: bool = False) -> dict[str, str]:
    """The banner of a stopped or crashed run, as ``describe`` words it."""
    state, text, where = ended(error, getattr(error, "elapsed", 0.0), getattr(error, "limit", 0.0),
                               getattr(error, "engine", "signal"), keep_going)
    return line(state, text, where)
