"""The small points of issue 10.4, each through a real kernel: -g 0, --memory 1e30, a bad setting
and %load_ext/%reload_ext, ■ in a fork cell, a signal cell refused in a kernel subshell."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from procs import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import time").status == "ok"


@pytest.mark.parametrize("grace", ["0", "0s", "0.0", "0ms"])
def test_grace_zero_is_accepted_as_the_setting_allows(kernel, grace):
    result = kernel.run(f"%%timeout 0.3 -m fork -g {grace}\nwhile True: pass")
    assert result.ename == "CellTimeoutError", result.evalue
    result = kernel.run(f"%%timeout 0.3 -m signal -g {grace}\nwhile True: pass")
    assert result.ename == "CellTimeoutError", result.evalue


@pytest.mark.parametrize(("args", "says"), [
    ("-m fork -g -1", "'-1'"),
    ("-m fork -g nan", "'nan'"),
    ("-m fork --memory 1e30", "--memory 1e30"),
    ("-m fork --memory 2EB", "'2EB'"),  # "E" is no unit: a bad size, not an overflow
    ("-m fork --memory 99999999TB", "at most 1 EiB"),
    ("--memory 1GB", "--memory works only with --mode fork"),
])
def test_bad_grace_and_memory_are_one_line_usage_errors(kernel, args, says):
    result = kernel.run(f"%%timeout 1 {args}\nsmall_ran = True")
    assert result.ename == "UsageError"
    assert says in result.evalue
    assert "\n" not in result.evalue
    assert "small_ran" not in kernel.value("dir()")


def test_a_large_memory_that_fits_runs(kernel):
    result = kernel.run("%%timeout 5 -m fork --memory 1000TB\n'room'")
    assert (result.status, result.out) == ("ok", "'room'")


def test_grace_applies_to_signal_cells_too(kernel):
    result = kernel.run("%%timeout 0.2 -g 0.5\nwhile True: pass")
    assert result.ename == "CellTimeoutError"


@pytest.mark.parametrize("setting", ["grace = -1", "every_cell = 'nan'", "default_mode = 'bogus'"])
def test_a_bad_setting_does_not_keep_the_extension_from_loading(fresh_kernel, setting):
    k = fresh_kernel
    k.run(f"%config TimeoutMagics.{setting}")  # before loading: IPython keeps it in the shell's config
    loaded = k.run("%load_ext nbtimeout")
    assert loaded.status == "ok", loaded.traceback
    assert f"ignoring TimeoutMagics.{setting.split()[0]}" in loaded.stream("stderr")
    assert k.run("%%timeout 0.2\nwhile True: pass").ename == "CellTimeoutError"
    # after loading, %config refuses it (IPython's way: a line on stderr) and %reload_ext still works
    k.run(f"%config TimeoutMagics.{setting}")
    reloaded = k.run("%reload_ext nbtimeout")
    assert reloaded.status == "ok", reloaded.traceback
    assert k.run("%%timeout 0.2\nwhile True: pass").ename == "CellTimeoutError"
    assert "every cell: off" in k.run("%timeout").stream()


def test_reload_ext_leaves_the_magics_and_every_cell_hook_loaded_once(fresh_kernel):
    k = fresh_kernel
    assert k.run("%load_ext nbtimeout").status == "ok"
    assert k.run("%reload_ext nbtimeout").status == "ok"
    assert k.run("%reload_ext nbtimeout").status == "ok"
    hooks = k.value("sum(type(t).__name__ == 'CellHook' for t in get_ipython().input_transformers_cleanup)")
    assert hooks == 1
    assert k.run("%timeout 0.2").status == "ok"
    assert k.run("while True: pass").ename == "CellTimeoutError"


def test_interrupt_in_a_fork_cell_ends_at_the_users_line(kernel):
    def press() -> None:
        time.sleep(1.5)  # the child is running the sleep by then; the traceback is the point here
        os.killpg(os.getpgid(kernel.pid), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    try:
        result = kernel.run("%%timeout 30 -m fork\nfork_x = 1\ntime.sleep(30)  # the-user-line\nfork_y = 2")
    finally:
        presser.join()
    assert result.ename == "KeyboardInterrupt"
    tb = result.traceback
    assert "----> 3 time.sleep(30)  # the-user-line" in tb, tb
    assert "selectors.py" not in tb
    assert tb.rstrip().endswith("KeyboardInterrupt:")
    assert "fork_x" not in kernel.value("dir()")  # a fork cell interrupted changes nothing in the kernel


# --- a kernel subshell (ipykernel 7): cells run on another thread --------------------------------

def test_a_signal_cell_refused_in_a_subshell_shows_no_countdown(kernel):
    assert kernel.run("%config TimeoutMagics.countdown_after = 0").status == "ok"  # would show at once
    try:
        sid = kernel.create_subshell()
        result = kernel.run_in_subshell(sid, "%%timeout 5 -m signal\nsubshell_ran = True")
        assert result.ename == "UsageError"
        assert "main thread" in result.evalue
        assert "\n" not in result.evalue
        assert result.of("display_data", "update_display_data") == []  # nothing opened, nothing stuck
        assert "subshell_ran" not in kernel.value("dir()")
        # the engine that works there does run it
        ran = kernel.run_in_subshell(sid, "%%timeout 5\nsubshell_ran = True\n'in the subshell'")
        assert (ran.status, ran.reply.get("evalue")) == ("ok", None)
    finally:
        kernel.run("%config TimeoutMagics.countdown_after = 1.0")
    assert wait_until(lambda: kernel.value("'subshell_ran' in dir()"), 5)
