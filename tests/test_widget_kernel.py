"""The countdown and the records a timed cell leaves, seen from the front end of a real kernel (issue 14).

The countdown appears only once a cell has run ``countdown_after`` seconds, is one display updated in
place, and becomes the cell's record when the cell ends. No widget, no comm, ever.
"""

from __future__ import annotations

import re
import time

import pytest
from kernelclient import Result

pytestmark = pytest.mark.timeout(120)

THREAD = "nbtimeout-countdown"
SLOT = "data-nbtimeout-slot"


@pytest.fixture(autouse=True)
def _no_countdown_thread_and_no_comm_left(kernel):
    """After every test the kernel runs no countdown thread and holds no comm (no widget alive)."""
    yield
    names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
    assert THREAD not in names
    assert kernel.value("len(get_ipython().kernel.comm_manager.comms)") == 0


def timed(kernel, code: str) -> tuple[Result, list[tuple[float, dict]]]:
    """Run ``code``; also when each message arrived, relative to execute_input."""
    arrived: list[tuple[float, dict]] = []
    result = kernel.run(code, on_message=lambda m: arrived.append((time.monotonic(), m)))
    start = next(t for t, m in arrived if m["msg_type"] == "execute_input")
    return result, [(t - start, m) for t, m in arrived]


def slot_messages(result: Result) -> list[dict]:
    """display_data / update_display_data messages that carry a display id (the countdown's line)."""
    return [m for m in result.of("display_data", "update_display_data")
            if m["content"].get("transient", {}).get("display_id")]


def plain(message: dict) -> str:
    return message["content"]["data"]["text/plain"]


def assert_inline_styled(page: str) -> None:
    """HTML that survives JupyterLab's sanitizer: style= attributes, no <style>, no script."""
    assert "style=" in page
    assert "<style" not in page.lower()
    assert "<script" not in page.lower()


def test_a_quick_cell_sends_no_countdown_and_no_comm(kernel):
    result = kernel.run("%%timeout 3\nx = 6 * 7\nx")
    assert (result.status, result.out) == ("ok", "42")
    assert result.of("comm_open", "comm_msg", "comm_close", "update_display_data") == []
    assert slot_messages(result) == []
    # the typed %%timeout cell leaves one static record (show_finished='typed')
    (record,) = result.displays()
    assert re.fullmatch(r"✔ Finished in \d+ ms \(limit 3 s, signal engine\)", record), record
    (page,) = result.displays("text/html")
    assert_inline_styled(page)
    assert SLOT not in page


def test_countdown_appears_after_countdown_after_and_moves(kernel):
    result, arrived = timed(kernel, "%%timeout 5\nimport time\ntime.sleep(2)\n'done'")
    assert (result.status, result.out) == ("ok", "'done'")
    assert result.of("comm_open", "comm_msg") == []
    slots = slot_messages(result)
    ids = {m["content"]["transient"]["display_id"] for m in slots}
    assert len(ids) == 1  # one line, updated in place
    assert [m["msg_type"] for m in slots] == ["display_data"] + ["update_display_data"] * (len(slots) - 1)
    first = next(t for t, m in arrived if m["msg_type"] == "display_data")
    assert 0.9 <= first < 1.8, f"the countdown appeared {first:.2f}s into the cell"
    live = [plain(m) for m in slots[:-1]]
    assert len(live) >= 3, live  # several updates a second
    assert all(re.fullmatch(r"◷ Running \d\.\d s of 5 s \(signal engine\)", text) for text in live), live
    seconds = [float(text.split()[2]) for text in live]
    assert seconds == sorted(seconds)
    assert 0.9 <= seconds[0] < seconds[-1] <= 2.1
    # at the end the line becomes the record, in place: no second display
    assert re.fullmatch(r"✔ Finished in 2(\.\d+)? s \(limit 5 s, signal engine\)", plain(slots[-1]))
    assert_inline_styled(slots[-1]["content"]["data"]["text/html"])
    assert [m for m in result.of("display_data") if m not in slots] == []


def test_countdown_after_setting(kernel):
    assert kernel.run("%config TimeoutMagics.countdown_after = 0.1").status == "ok"
    try:
        result, arrived = timed(kernel, "%%timeout 3\nimport time\ntime.sleep(0.6)")
        first = next(t for t, m in arrived if m["msg_type"] == "display_data")
        assert first < 0.5
        assert len(slot_messages(result)) >= 3
    finally:
        kernel.run("%config TimeoutMagics.countdown_after = 1.0")
    assert slot_messages(kernel.run("%%timeout 3\nimport time\ntime.sleep(0.3)")) == []


def test_stopped_cell_turns_its_countdown_into_the_banner(kernel):
    result = kernel.run("%%timeout 1.5\ndef spin():\n    while True: pass\nspin()")
    assert result.ename == "CellTimeoutError"
    slots = slot_messages(result)
    assert slots
    assert slots[-1]["msg_type"] == "update_display_data"
    banner = plain(slots[-1])
    assert banner.startswith("■ Stopped: %%timeout stopped this cell after 1.")
    assert "(limit 1.5 s, signal engine)" in banner
    assert re.search(r"; at line 3 in spin\(\) of In \[\d+\]$", banner), banner
    page = slots[-1]["content"]["data"]["text/html"]
    assert_inline_styled(page)
    assert "line 3 in spin() of In [" in page
    assert len(result.of("display_data")) == 1  # the banner took the countdown's place


def test_quick_stop_shows_the_banner_without_a_countdown(kernel):
    result = kernel.run("%%timeout 0.3\nwhile True: pass")
    assert result.ename == "CellTimeoutError"
    assert slot_messages(result) == []
    (banner,) = result.displays()
    assert banner.startswith("■ Stopped: %%timeout stopped this cell after ")
    assert "overran" not in banner  # a Python loop stops on time


def test_continue_shows_the_continuing_state(kernel):
    result = kernel.run("%%timeout 0.2 -c\nwhile True: pass")
    assert result.status == "ok"
    (banner,) = result.displays()
    assert banner.startswith("■ Stopped (continuing): ")
    assert "the notebook goes on (--continue)" in banner


def test_signal_cell_stuck_in_c_says_by_how_much_and_what_stops_it(kernel):
    result = kernel.run("%%timeout 0.2 -c\ntotal = sum(range(6 * 10**7))\nwhile True: pass")
    assert result.status == "ok"
    banner = result.displays()[-1]  # on a loaded machine the C call can outlast countdown_after
    overrun = re.search(r"it overran by (\d+ ms|\d+(?:\.\d+)? s): the signal engine stops a cell only when "
                        r"it runs Python", banner)
    assert overrun, banner
    assert "-m fork stops C code on time" in banner
    fork = kernel.run("%%timeout 0.3 -m fork -c\ntotal = sum(range(10**10))")
    banner = fork.displays()[-1]
    assert "overran" not in banner


def test_crashed_fork_cell(kernel):
    result = kernel.run("%%timeout 2 -m fork\nimport ctypes; ctypes.string_at(0)")
    assert result.ename == "CellCrashedError"
    (banner,) = result.displays()
    assert banner.startswith("☠ Crashed: the fork child running this cell was killed by SIGSEGV after ")
    assert "(fork engine)" in banner
    (page,) = result.displays("text/html")
    assert_inline_styled(page)
    assert kernel.alive()


def test_failed_cell_leaves_only_its_traceback_or_ends_its_countdown(kernel):
    quick = kernel.run("%%timeout 1\n1/0")
    assert quick.ename == "ZeroDivisionError"
    assert quick.displays() == []  # the traceback says it all
    slow = kernel.run("%%timeout 5\nimport time\ntime.sleep(1.5)\n1/0")
    assert slow.ename == "ZeroDivisionError"
    slots = slot_messages(slow)
    assert re.fullmatch(r"✖ Failed \(ZeroDivisionError\) after 1(\.\d+)? s \(limit 5 s, signal engine\)",
                        plain(slots[-1]))


def test_every_cell_limit_leaves_nothing_for_finished_cells(kernel):
    assert kernel.run("%timeout 30").status == "ok"
    try:
        quick = kernel.run("every_quick = 1")
        slow = kernel.run("import time\ntime.sleep(1.5)\n'slow'")
    finally:
        kernel.run("%timeout off")
    assert quick.of("display_data", "update_display_data", "comm_open") == []
    assert slow.out == "'slow'"
    slots = slot_messages(slow)
    assert len(slots) >= 2  # it showed a countdown while it ran...
    last = slots[-1]["content"]["data"]
    assert last["text/plain"] == ""  # ...and left nothing once it finished
    assert last["text/html"] == f'<div {SLOT}="countdown"></div>'  # the same at every run: no diff


def saved_outputs(result: Result) -> list[tuple[str, str]]:
    """The cell's outputs as a front end keeps (and saves) them: display updates applied in place."""
    outputs: list[list] = []
    by_id: dict[str, list] = {}
    for message in result.messages:
        kind, content = message["msg_type"], message["content"]
        display_id = content.get("transient", {}).get("display_id")
        if kind == "stream":
            if outputs and outputs[-1][0] == "stream":
                outputs[-1][1] += content["text"]
            else:
                outputs.append(["stream", content["text"]])
        elif kind == "display_data":
            outputs.append(["display", content["data"]["text/plain"]])
            if display_id:
                by_id[display_id] = outputs[-1]
        elif kind == "update_display_data" and display_id in by_id:
            by_id[display_id][1] = content["data"]["text/plain"]
        elif kind == "error":
            outputs.append(["error", content["ename"]])
    return [tuple(o) for o in outputs]


def test_the_record_of_a_stopped_cell_comes_after_what_it_printed(kernel):
    code = "%%timeout 2\nimport time\nfor i in range(9):\n    print(i, flush=True)\n    time.sleep(0.35)"
    result = kernel.run(code)
    assert result.ename == "CellTimeoutError"
    outputs = saved_outputs(result)
    kinds = [kind for kind, _ in outputs if kind != "display" or _]  # an emptied countdown line is no output
    assert kinds[-3:] == ["stream", "display", "error"], outputs
    assert [text for kind, text in outputs if kind == "display" and text][-1].startswith("■ Stopped: ")
    assert [text for kind, text in outputs if kind == "stream"] != []
    assert "".join(text for kind, text in outputs if kind == "stream").split() == [str(i) for i in range(6)]


def test_a_record_with_nothing_printed_after_the_countdown_takes_its_place(kernel):
    result = kernel.run("%%timeout 1.5\nprint('before')\nwhile True: pass")
    outputs = saved_outputs(result)
    assert [kind for kind, _ in outputs] == ["stream", "display", "error"], outputs
    assert outputs[1][1].startswith("■ Stopped: ")


def test_show_finished_setting(kernel):
    assert kernel.run("%config TimeoutMagics.show_finished = 'never'").status == "ok"
    try:
        assert kernel.run("%%timeout 1\n5").displays() == []
        assert kernel.run("%config TimeoutMagics.show_finished = 'always'").status == "ok"
        assert kernel.run("%timeout 30").status == "ok"
        (record,) = kernel.run("6").displays()
        assert record.startswith("✔ Finished in ")
    finally:
        kernel.run("%timeout off")
        kernel.run("%config TimeoutMagics.show_finished = 'typed'")
    kernel.run("%config TimeoutMagics.show_finished = 'sometimes'")  # refused by the trait
    assert kernel.value("get_ipython().magics_manager.registry['TimeoutMagics'].show_finished") == "typed"


def test_fork_cell_has_a_countdown_but_its_child_no_countdown_thread(kernel):
    result = kernel.run("%%timeout 5 -m fork\nimport threading, time\ntime.sleep(1.6)\n"
                        "child_threads = [t.name for t in threading.enumerate()]")
    assert result.status == "ok", result.traceback
    slots = slot_messages(result)
    assert len(slots) >= 3
    assert plain(slots[0]).endswith("of 5 s (fork engine)")
    assert kernel.value("child_threads") == ["MainThread"]


@pytest.mark.parametrize("code", ["%%timeout 3 -q\nimport time\ntime.sleep(1.3)\n7",
                                  "%%timeout 0.2 -q -c\nwhile True: pass"])
def test_quiet_shows_no_countdown(kernel, code):
    result = kernel.run(code)
    assert slot_messages(result) == []
    assert len(result.displays()) == (1 if "-c" in code else 0)


def test_a_capture_in_the_cell_does_not_swallow_the_countdown(kernel):
    result = kernel.run("%%timeout 5\nfrom IPython.utils.capture import capture_output\n"
                        "with capture_output() as cap:\n    import time; time.sleep(1.5)\n'after'")
    assert result.out == "'after'"
    assert len(slot_messages(result)) >= 2


def test_a_cell_that_clears_its_output_gets_its_countdown_and_record_back(kernel):
    result = kernel.run("%%timeout 5\nimport time\nfrom IPython.display import clear_output\n"
                        "for i in range(16):\n    clear_output(wait=True)\n    print(i)\n    time.sleep(0.1)")
    assert result.status == "ok", result.traceback
    kinds = [m["msg_type"] for m in result.messages
             if m["msg_type"] == "clear_output" or m in slot_messages(result)]
    last_clear = len(kinds) - 1 - kinds[::-1].index("clear_output")
    # after the last clear, the line is shown anew (a display, not an update), and ends as the record
    assert kinds[last_clear + 1] == "display_data", kinds
    assert plain(slot_messages(result)[-1]).startswith("✔ Finished in 1.")
    ids = {m["content"]["transient"]["display_id"] for m in slot_messages(result)}
    assert len(ids) == 1


def test_interrupted_cell_ends_its_countdown(kernel):
    def interrupt_once_shown(message: dict) -> None:
        if message["msg_type"] == "display_data" and not interrupted:
            interrupted.append(True)
            kernel.interrupt()

    interrupted: list[bool] = []
    result = kernel.run("%%timeout 30\nimport time\ntime.sleep(20)", on_message=interrupt_once_shown)
    assert result.ename == "KeyboardInterrupt"
    assert re.fullmatch(r"⚠ Interrupted after 1(\.\d+)? s \(limit 30 s, signal engine\)",
                        plain(slot_messages(result)[-1]))


def test_a_signal_cell_that_finished_late_says_so_even_under_the_every_cell_limit(kernel):
    assert kernel.run("%timeout 0.2").status == "ok"
    try:
        result = kernel.run("total = sum(range(6 * 10**7))")  # the alarm waits for C; then the cell is done
    finally:
        kernel.run("%timeout off")
    if result.status == "error":  # the engine may also stop it at the first bytecode after the C call
        assert result.ename == "CellTimeoutError"
    record = result.displays()[-1]  # on a loaded machine the C call can outlast countdown_after
    assert "it overran by " in record
    assert "-m fork stops C code on time" in record


def test_a_timed_cell_nested_in_a_fork_cell_has_a_line_of_its_own(kernel):
    result = kernel.run("%%timeout 10 -m fork\n"
                        "get_ipython().run_cell_magic('timeout', '5', 'import time; time.sleep(1.5)')\n'x'")
    assert (result.status, result.out) == ("ok", "'x'")
    lines: dict[str, list[str]] = {}
    for m in slot_messages(result):
        lines.setdefault(m["content"]["transient"]["display_id"], []).append(plain(m))
    assert len(lines) == 2, lines  # two countdowns
    # two records: the outer one after the inner one (whose line came after the outer's countdown)
    records = [text for kind, text in saved_outputs(result) if kind == "display" and text]
    assert [text.split(" (limit ")[1] for text in records] == ["5 s, signal engine)", "10 s, fork engine)"]
    assert all(text.startswith("✔ Finished in 1.") for text in records)
