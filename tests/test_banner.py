"""Banner and record text and HTML, their contrast in JupyterLab's themes, the nbval sanitize file."""

from __future__ import annotations

import pathlib
import re
import time

import pytest
from nbval.plugin import get_sanitize_patterns

from nbtimeout._errors import BudgetSpentError, CellCrashedError, CellTimeoutError
from nbtimeout._notebook import banner as _banner
from nbtimeout._notebook import widget as _widget
from nbtimeout._notebook.banner import LOOKS, bundle, ended, line
from nbtimeout._notebook.options import Options

CFG = pathlib.Path(__file__).parent.parent / "notebooks" / "nbval-sanitize.cfg"
# JupyterLab 4's themes: the notebook's background (--jp-layout-color0) and its text colour
# (--jp-content-font-color1), as their CSS defines them.
THEMES = {"light": ((255, 255, 255), (0, 0, 0, 0.87)), "dark": ((17, 17, 17), (255, 255, 255, 1.0))}


def sanitize(text: str) -> str:
    """What nbval compares after --nbval-sanitize-with notebooks/nbval-sanitize.cfg."""
    for regex, replace in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replace, text)
    return text


def luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: tuple[float, float, float], two: tuple[float, float, float]) -> float:
    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def over(colour: tuple[float, ...], under: tuple[float, float, float]) -> tuple[float, float, float]:
    """``colour`` (r, g, b, alpha) composited over an opaque ``under``."""
    *rgb, alpha = colour
    return tuple(alpha * c + (1 - alpha) * u for c, u in zip(rgb, under, strict=True))


ERRORS = {
    "stopped": lambda: CellTimeoutError(5.01, 5.02, "signal", where="line 4 in spin() of In [3]"),
    "crashed": lambda: CellCrashedError(11, None, 0.012),
    "spent": lambda: BudgetSpentError(600, 601),
}


@pytest.mark.parametrize("state", sorted(LOOKS))
@pytest.mark.parametrize("theme", sorted(THEMES))
def test_text_meets_wcag_aa_on_both_themes(state, theme):
    page = line(state, "some words", where="line 1 of In [1]", fill=0.5 if state == "running" else None)["text/html"]
    # the text keeps the theme's colour: no element sets a colour of its own
    assert "color:inherit" in page
    assert not re.search(r"(?<![-\w])color:(?!inherit)", page), page
    (tint,) = re.findall(r"background:rgba\((\d+),(\d+),(\d+),([\d.]+)\)", page.split(">")[0])
    page_bg, text = THEMES[theme]
    behind = over(tuple(float(v) for v in tint), page_bg)
    ratio = contrast(over(text, behind), behind)
    assert ratio >= 4.5, f"{state} on {theme}: {ratio:.2f}:1"


@pytest.mark.parametrize("make", [ERRORS["stopped"], ERRORS["crashed"]])
@pytest.mark.parametrize("mime", ["text/plain", "text/html"])
def test_measured_time_is_sanitized(make, mime):
    one, two = make(), make()
    two.elapsed = one.elapsed + 0.01
    if isinstance(two, CellCrashedError):
        two = CellCrashedError(11, None, 0.5)
    assert bundle(one)[mime] != bundle(two)[mime]  # the banner does say how long
    assert sanitize(bundle(one)[mime]) == sanitize(bundle(two)[mime])


def test_html_of_a_fresh_banner_is_compared_but_a_countdown_line_is_masked():
    stopped = bundle(ERRORS["stopped"]())
    assert sanitize(stopped["text/html"]).count("(limit 5.01 s, signal engine)") == 1  # still checked
    finished = line(*ended(None, 3.2, 10, "signal")[:2])["text/html"]
    assert sanitize(finished) == sanitize(line(*ended(None, 0.004, 10, "signal")[:2])["text/html"])
    live = line("running", "1.0 s of 10 s (signal engine)", slot="nbtimeout-x-1", fill=0.1)
    record = line(*ended(None, 3.2, 10, "signal"), slot="nbtimeout-x-1")
    emptied = {"text/plain": "", "text/html": f'<div {_banner.SLOT}="nbtimeout-x-1"></div>'}
    for mime in ("text/plain", "text/html"):
        assert sanitize(live[mime]) == sanitize(record[mime]) == sanitize(emptied[mime])


def test_banner_names_what_when_engine_and_where():
    data = bundle(CellTimeoutError(5.01, 5.02, "fork", where="line 4 in spin() of In [3]"), True)
    plain, page = data["text/plain"], data["text/html"]
    assert plain == ("■ Stopped (continuing): %%timeout stopped this cell after 5.02 s (limit 5.01 s, "
                     "fork engine); the notebook goes on (--continue); at line 4 in spin() of In [3]")
    assert "\n" not in plain
    assert re.search(r"<b>■ Stopped \(continuing\)</b>", page)
    assert ">at line 4 in spin() of In [3]</div>" in page
    assert "<style" not in page
    assert "<script" not in page


def test_a_signal_overrun_is_explained_and_a_fork_one_is_not():
    late = bundle(CellTimeoutError(0.2, 3.1, "signal"))["text/plain"]
    assert "it overran by 2.9 s: the signal engine stops a cell only when it runs Python" in late
    assert "-m fork stops C code on time" in late
    assert "overran" not in bundle(CellTimeoutError(0.2, 0.3, "signal"))["text/plain"]  # on time enough
    assert "overran" not in bundle(CellTimeoutError(0.2, 3.1, "fork"))["text/plain"]


def test_budget_banners_name_the_budget():
    spent = bundle(ERRORS["spent"]())["text/plain"]
    assert spent == ("■ Budget spent: the notebook's 10 min budget is spent: this cell did not run "
                     "(%timeout off clears the budget)")
    state, text, _ = ended(CellTimeoutError(42, 42.01, "signal"), 42, 42, "signal", budget=600)
    assert state == "stopped"
    assert text.endswith("(limit: what was left of the 10 min budget, signal engine); "
                         "the notebook's 10 min budget ran out")


def test_crash_banner_says_where_is_unknown():
    plain = bundle(CellCrashedError(11, None, 0.012))["text/plain"]
    assert plain.startswith("☠ Crashed: the fork child running this cell was killed by SIGSEGV after 12 ms")
    assert plain.endswith("; at line unknown: the child died before it could report its stack")


def test_records_of_finished_failed_and_interrupted_runs():
    assert line(*ended(None, 1.234, 5, "fork")[:2])["text/plain"] == "✔ Finished in 1.23 s (limit 5 s, fork engine)"
    state, text, _ = ended(ZeroDivisionError("x"), 0.5, 5, "signal")
    assert line(state, text)["text/plain"] == "✖ Failed (ZeroDivisionError) after 500 ms (limit 5 s, signal engine)"
    state, text, _ = ended(KeyboardInterrupt(), 2, 5, "signal")
    assert line(state, text)["text/plain"] == "⚠ Interrupted after 2 s (limit 5 s, signal engine)"


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[dict, dict, bool]] = []

    def publish(self, data, metadata=None, *, transient=None, update=False):
        self.sent.append((data, transient or {}, update))


class _Shell:
    """A shell without a kernel attribute, as plain IPython in a terminal is."""

    def __init__(self) -> None:
        self.display_pub = _Publisher()


def test_without_a_kernel_no_countdown_but_still_the_banner():
    shell = _Shell()
    with pytest.raises(CellTimeoutError), _widget.countdown(Options(0.1), shell, after=0.0):
        raise CellTimeoutError(0.1, 0.1, "signal")
    ((data, transient, update),) = shell.display_pub.sent
    assert data["text/plain"].startswith("■ Stopped: ")
    assert (transient, update) == ({}, False)


def test_quiet_countdown_costs_almost_nothing():
    quiet, shell, n = Options(1.0, quiet=True), _Shell(), 20000
    start = time.perf_counter()
    for _ in range(n):
        with _widget.countdown(quiet, shell, 1.0, False):
            pass
    per_cell = (time.perf_counter() - start) / n
    assert shell.display_pub.sent == []
    assert per_cell < 20e-6, f"{per_cell * 1e6:.1f} µs per quiet cell"


def test_a_shell_without_a_display_publisher_runs_the_cell_and_shows_nothing():
    bare = type("Bare", (), {"kernel": object()})()
    with pytest.raises(CellTimeoutError), _widget.countdown(Options(0.1), bare, after=0.0, show_finished=True):
        raise CellTimeoutError(0.1, 0.1, "signal")
    with _widget.countdown(Options(0.1), bare, after=0.0, show_finished=True) as shown:
        pass
    assert shown.live is False  # no countdown thread; the record went nowhere
