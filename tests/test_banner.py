"""Banner text and HTML, the nbval sanitize file, and the countdown's no-op cases, in-process."""

from __future__ import annotations

import pathlib
import re
import time

import pytest
from nbval.plugin import get_sanitize_patterns

from nbtimeout._errors import CellCrashedError, CellTimeoutError
from nbtimeout._notebook import widget as _widget
from nbtimeout._notebook.banner import bundle
from nbtimeout._notebook.options import Options

CFG = pathlib.Path(__file__).parent.parent / "notebooks" / "nbval-sanitize.cfg"


def sanitize(text: str) -> str:
    """What nbval compares after --nbval-sanitize-with notebooks/nbval-sanitize.cfg."""
    for regex, replace in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize("make", [
    lambda t: CellTimeoutError(5.01, t, "signal", where="line 4 in spin() of In [3]"),
    lambda t: CellCrashedError(11, None, t),
])
@pytest.mark.parametrize("mime", ["text/plain", "text/html"])
def test_measured_time_is_sanitized(make, mime):
    one, two = bundle(make(5.0123))[mime], bundle(make(5.34))[mime]
    assert one != two  # the banner does say how long
    assert sanitize(one) == sanitize(two)


def test_countdown_text_is_sanitized():
    running = "%%timeout 5.01 s · signal: running"
    final = "%%timeout 5.01 s · signal: ✔ Finished in 1.23 s / 5.01 s · signal"
    assert sanitize(running) == sanitize(final) == "%%timeout 5.01 s · signal: STATE"
    assert sanitize("%%timeout 2 s · fork: running") != sanitize(running)  # limit and engine stay


def test_banner_names_what_when_engine_and_where():
    data = bundle(CellTimeoutError(5.01, 5.02, "fork", where="line 4 in spin() of In [3]"), True)
    plain, page = data["text/plain"], data["text/html"]
    assert plain == ("■ Stopped (continuing): %%timeout stopped this cell after 5.02 s (limit 5.01 s, "
                     "fork engine); the notebook goes on (--continue); at line 4 in spin() of In [3]")
    assert "\n" not in plain
    assert re.search(r'<b style="[^"]+">■ Stopped \(continuing\)</b>', page)
    assert ">at line 4 in spin() of In [3]</div>" in page
    assert "<style" not in page
    assert "<script" not in page


def test_crash_banner_says_where_is_unknown():
    plain = bundle(CellCrashedError(11, None, 0.012))["text/plain"]
    assert plain.startswith("☠ Crashed: the fork child running this cell was killed by SIGSEGV after 12 ms")
    assert plain.endswith("; at line unknown: the child died before it could report its stack")


class _Shell:
    """A shell without a kernel attribute, as plain IPython in a terminal is."""


def test_no_countdown_without_a_kernel_or_when_quiet():
    assert _widget.countdown(Options(1.0), _Shell()) is _widget._QUIET
    with_kernel = type("KernelShell", (), {"kernel": object()})()
    assert _widget.countdown(Options(1.0, quiet=True), with_kernel) is _widget._QUIET


def test_quiet_countdown_costs_almost_nothing():
    quiet, shell, n = Options(1.0, quiet=True), _Shell(), 20000
    start = time.perf_counter()
    for _ in range(n):
        with _widget.countdown(quiet, shell):
            pass
    per_cell = (time.perf_counter() - start) / n
    assert per_cell < 20e-6, f"{per_cell * 1e6:.1f} µs per quiet cell"
