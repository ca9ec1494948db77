"""``nbtimeout.map`` in a real kernel, read over iopub as a front end reads it (issue 6)."""

from __future__ import annotations

import re
import textwrap

import pytest
from procs import children

pytestmark = pytest.mark.timeout(120)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

TASKS = """
import ctypes, os, signal, time, nbtimeout

def work(kind):  # defined in the notebook: workers are forked, nothing is pickled
    print(f"start {kind}")
    if kind == "sleep":
        time.sleep(60)
    elif kind == "c-loop":
        sum(range(10**10))
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    elif kind == "raise":
        raise KeyError(kind)
    return kind.upper()
"""
KINDS = ["ok", "sleep", "c-loop", "segfault", "deaf", "raise", "fine"]


@pytest.fixture(scope="module", autouse=True)
def _tasks(kernel):
    assert kernel.run(TASKS).status == "ok"


@pytest.fixture(autouse=True)
def _no_worker_left(kernel):
    """After each test the kernel has no more children than before: every worker was reaped."""
    before = children(kernel.pid)
    yield
    assert children(kernel.pid) <= before


def test_every_kind_of_task_gets_its_outcome_and_the_kernel_lives_on(kernel):
    result = kernel.run(f"r = nbtimeout.map(work, {KINDS!r}, timeout=0.3, workers=3)\n"
                        "[o.status for o in r]")
    assert result.status == "ok", result.traceback
    assert eval(result.out) == ["finished", "stopped", "stopped", "crashed", "stopped", "failed",
                                "finished"]
    assert kernel.value("r.values()") == ["OK", "FINE"]
    assert kernel.value("[type(o.error).__name__ for o in r]") == [
        "NoneType", "CellTimeoutError", "CellTimeoutError", "CellCrashedError", "CellTimeoutError",
        "KeyError", "NoneType"]
    assert kernel.value("r[3].error.signal") == "SIGSEGV"
    assert all(0.3 <= e < 0.6 for e in kernel.value("[o.elapsed for o in r if o.status == 'stopped']"))
    out = result.stream()
    for i, kind in enumerate(KINDS):
        assert f"[{i}] start {kind}\n" in out
    assert "DeprecationWarning" not in result.stream("stderr")
    assert "[3] Fatal Python error: Segmentation fault" in result.stream("stderr")
    # raise_first() raises the first error in input order, as the cell's error
    raised = kernel.run("r.raise_first()")
    assert (raised.status, raised.ename) == ("error", "CellTimeoutError")


def test_a_live_widget_with_one_square_per_task_ends_in_a_summary(kernel):
    result = kernel.run(f"r = nbtimeout.map(work, {KINDS!r}, timeout=0.3, workers=3)")
    assert result.status == "ok", result.traceback
    shown = result.of("display_data", "update_display_data")
    assert shown
    assert all(WIDGET_VIEW in m["content"]["data"] for m in shown)
    summary = shown[-1]["content"]["data"]["text/plain"]  # what a saved notebook keeps
    assert shown[-1]["msg_type"] == "update_display_data"
    assert re.fullmatch(r"nbtimeout\.map: 7/7 tasks done in [\d.]+ m?s on 3 workers, 300 ms limit each: "
                        r"2 finished, 3 stopped, 1 crashed, 1 failed", summary), summary
    # the widget's state as the front end receives it: its last HTML value
    values = [m["content"]["data"]["state"]["value"] for m in result.of("comm_msg")
              if "value" in m["content"]["data"].get("state", {})]
    opened = [m for m in result.of("comm_open")
              if m["content"]["data"]["state"].get("_model_name") == "HTMLModel"]
    assert opened
    last = values[-1] if values else opened[0]["content"]["data"]["state"]["value"]
    squares = re.findall(r'title="\[(\d+)\] (\w+)"', last)
    assert squares == [(str(i), s) for i, s in enumerate(
        ["finished", "stopped", "stopped", "crashed", "stopped", "failed", "finished"])]
    assert "style=" in last
    assert "<style" not in last  # JupyterLab strips <style> from untrusted output
    assert len(values) >= 2  # redrawn while it ran, not only at the end


def test_the_interrupt_button_stops_every_worker(kernel):
    interrupted = []

    def on_message(msg):  # interrupt once the tasks are running
        if msg["msg_type"] == "stream" and "start sleep" in msg["content"]["text"] and not interrupted:
            interrupted.append(True)
            kernel.interrupt()

    result = kernel.run("nbtimeout.map(work, ['sleep'] * 4, timeout=30, workers=2)", timeout=20,
                        on_message=on_message)
    assert interrupted
    assert (result.status, result.ename) == ("error", "KeyboardInterrupt")
    assert kernel.alive()
    assert kernel.run("1 + 1").out == "2"


def test_recycled_and_replaced_workers_differ(kernel):
    code = textwrap.dedent("""
        r = nbtimeout.map(lambda _: os.getpid(), range(4), timeout=5, workers=1, max_tasks_per_worker=2)
        pids = r.values()
        (pids[0] == pids[1], pids[2] == pids[3], pids[0] != pids[2], os.getpid() not in pids)
    """)
    result = kernel.run(code)
    assert result.status == "ok", result.traceback
    assert result.out == "(True, True, True, True)"
