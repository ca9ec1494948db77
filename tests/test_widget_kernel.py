"""The countdown widget and the banners, seen from the front end of a real kernel (issue 4)."""

from __future__ import annotations

import re

import pytest
from kernelclient import Result

pytestmark = pytest.mark.timeout(120)

THREAD = "nbtimeout-countdown"


@pytest.fixture(autouse=True)
def _no_countdown_thread_left(kernel):
    """After every test the kernel runs no countdown thread: it is joined before the cell returns."""
    yield
    names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
    assert THREAD not in names


def models(result: Result, name: str) -> list[str]:
    """comm ids of the widget models of class ``name`` the cell opened."""
    return [m["content"]["comm_id"] for m in result.of("comm_open")
            if m["content"]["data"]["state"].get("_model_name") == name]


def updates(result: Result, comm_id: str, key: str) -> list[object]:
    """Successive values of ``key`` sent to the front end for one model."""
    return [m["content"]["data"]["state"][key] for m in result.of("comm_msg")
            if m["content"]["comm_id"] == comm_id and m["content"]["data"].get("method") == "update"
            and key in m["content"]["data"]["state"]]


def assert_inline_styled(page: str) -> None:
    """Banner HTML that survives JupyterLab's sanitizer: style= attributes, no <style>, no script."""
    assert "style=" in page
    assert "<style" not in page.lower()
    assert "<script" not in page.lower()


def final_label(result: Result) -> str:
    (label,) = models(result, "LabelModel")
    return updates(result, label, "value")[-1]


def test_countdown_opens_and_moves_while_the_cell_runs(kernel):
    result = kernel.run("%%timeout 3\nimport time\ntime.sleep(1.2)\n'done'")
    assert (result.status, result.out) == ("ok", "'done'")
    assert len(models(result, "HBoxModel")) == 1
    (bar,) = models(result, "FloatProgressModel")
    opened = next(m for m in result.of("comm_open") if m["content"]["comm_id"] == bar)
    assert opened["content"]["data"]["state"]["max"] == 3.0
    values = updates(result, bar, "value")
    live = values[:-1]  # the last one is the final state
    assert len(live) >= 3, values  # several updates a second
    assert live == sorted(live)
    assert 0 < live[0] < live[-1] < 3.0
    # the updates went out before the cell ended: the final display update follows them all
    sent = [i for i, m in enumerate(result.messages) if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == bar and "value" in m["content"]["data"].get("state", {})]
    ended = [i for i, m in enumerate(result.messages) if m["msg_type"] == "update_display_data"]
    assert len(ended) == 1
    assert all(i < ended[0] for i in sent[:-1])
    label = final_label(result)
    assert re.fullmatch(r"✔ Finished in 1\.\d+ s / 3 s · signal", label), label
    # the saved notebook keeps text/plain: first "running", then the final text
    assert result.widgets() == ["%%timeout 3 s · signal: running", f"%%timeout 3 s · signal: {label}"]
    assert result.displays() == []  # no banner on a finished cell


def test_stopped_cell_final_state_and_banner(kernel):
    result = kernel.run("%%timeout 0.4\ndef spin():\n    while True: pass\nspin()")
    assert result.ename == "CellTimeoutError"
    assert re.fullmatch(r"■ Stopped after 4\d\d ms / 400 ms · signal", final_label(result))
    (bar,) = models(result, "FloatProgressModel")
    assert updates(result, bar, "bar_style")[-1] == "danger"
    assert updates(result, bar, "value")[-1] == 0.4  # full
    (plain,) = result.displays()
    assert plain.startswith("■ Stopped: %%timeout stopped this cell after ")
    assert "(limit 400 ms, signal engine)" in plain
    assert re.search(r"; at line 3 in spin\(\) of In \[\d+\]$", plain), plain
    (page,) = result.displays("text/html")
    assert_inline_styled(page)
    assert "line 3 in spin() of In [" in page


def test_continue_shows_the_continuing_state(kernel):
    result = kernel.run("%%timeout 0.2 -c\nwhile True: pass")
    assert result.status == "ok"
    assert final_label(result).startswith("■ Stopped (continuing) after ")
    (plain,) = result.displays()
    assert "the notebook goes on (--continue)" in plain


def test_crashed_fork_cell(kernel):
    result = kernel.run("%%timeout 2 -m fork\nimport ctypes; ctypes.string_at(0)")
    assert result.ename == "CellCrashedError"
    assert re.fullmatch(r"☠ Crashed \(SIGSEGV\) after \d+ ms / 2 s · fork", final_label(result))
    (plain,) = result.displays()
    assert plain.startswith("☠ Crashed: the fork child running this cell was killed by SIGSEGV after ")
    assert "(fork engine)" in plain
    (page,) = result.displays("text/html")
    assert_inline_styled(page)
    assert kernel.alive()


def test_failed_cell(kernel):
    result = kernel.run("%%timeout 1\n1/0")
    assert result.ename == "ZeroDivisionError"
    assert re.fullmatch(r"✖ Failed \(ZeroDivisionError\) after \d+ ms / 1 s · signal", final_label(result))
    assert result.displays() == []  # the traceback says it all


def test_fork_child_has_no_countdown_thread(kernel):
    result = kernel.run("%%timeout 3 -m fork\nimport threading, time\ntime.sleep(0.5)\n"
                        "child_threads = [t.name for t in threading.enumerate()]")
    assert result.status == "ok", result.traceback
    (bar,) = models(result, "FloatProgressModel")
    assert len(updates(result, bar, "value")) >= 2  # the parent's countdown ran meanwhile
    assert kernel.value("child_threads") == ["MainThread"]


@pytest.mark.parametrize("code", ["%%timeout 1 -q\n7", "%%timeout 0.2 -q -c\nwhile True: pass"])
def test_quiet_shows_no_widget(kernel, code):
    result = kernel.run(code)
    assert result.of("comm_open", "comm_msg") == []
    assert result.widgets() == []
    assert len(result.displays()) == (1 if "-c" in code else 0)


def test_quiet_setting(kernel):
    assert kernel.run("%config TimeoutMagics.quiet = True").status == "ok"
    try:
        result = kernel.run("%%timeout 1\n8")
        assert result.out == "8"
        assert result.of("comm_open", "comm_msg") == []
    finally:
        kernel.run("%config TimeoutMagics.quiet = False")
    assert len(kernel.run("%%timeout 1\n9").widgets()) == 2
