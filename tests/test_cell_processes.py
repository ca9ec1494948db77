"""A stopped signal cell takes the processes it started with it (issue 10, point 2), in a real kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import psutil
import pytest
from kernelclient import Kernel, Result
from procs import children, wait_until

pytestmark = pytest.mark.timeout(180)


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import os, signal, subprocess, sys, time, nbtimeout").status == "ok"


@pytest.fixture(autouse=True)
def _nothing_left(kernel):
    """Every test ends with the kernel owning no child processes, not even zombies."""
    yield
    assert wait_until(lambda: not children(kernel.pid), 3), children(kernel.pid)


def running(marker: str) -> list[psutil.Process]:
    """Processes on this machine whose command line contains ``marker`` (a unique sleep time)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def elapsed(kernel: Kernel) -> float:
    return kernel.value("time.monotonic() - _t0")


# Each starts a process that would run for ~30 s; its sleep time, unique per case, finds it.
STARTERS = {
    "shell line": ("!sleep 30.11", "30.11"),
    "shell line in a pipeline": ("!sleep 30.12 | cat", "30.12"),
    "bash cell magic": ("%%bash\nsleep 30.13", "30.13"),
    "Popen.wait": ("subprocess.Popen(['sleep', '30.14']).wait()", "30.14"),
    "subprocess.run": ("subprocess.run('sleep 30.15', shell=True)", "30.15"),
    "os.system": ("os.system('sleep 30.16')", "30.16"),
    "check_output": ("subprocess.check_output(['sleep', '30.17'])", "30.17"),
}


@pytest.mark.parametrize("name", list(STARTERS))
def test_a_timeout_stops_what_the_cell_started(kernel, name):
    code, marker = STARTERS[name]
    assert kernel.run("_t0 = time.monotonic()").status == "ok"
    result = kernel.run(f"%%timeout 1\n{code}")
    assert result.ename == "CellTimeoutError", result.traceback
    # os.system waits in C: a watcher ends its process so system() returns; then the alarm raises
    assert 0.9 <= elapsed(kernel) <= 1 + 1 + 3  # the limit, the grace, room for a busy machine (not 30 s)
    assert wait_until(lambda: not running(marker), 3), running(marker)


def test_os_system_ends_within_the_limit_plus_grace_even_if_sigterm_is_ignored(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5 -g 0.5
        _t0 = time.monotonic()
        os.system("trap '' TERM; sleep 30.21; true")
    """))
    assert result.ename == "CellTimeoutError"
    assert 0.45 <= elapsed(kernel) <= 0.5 + 0.5 + 3
    assert wait_until(lambda: not running("30.21"), 3)


def test_grace_zero_kills_at_once(kernel):
    assert kernel.run("%config TimeoutMagics.grace = 10").status == "ok"  # what -g 0 overrides
    try:
        result = kernel.run(cell("""
            %%timeout 0.3 -g 0
            _t0 = time.monotonic()
            subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 30.22; true"]).wait()
        """))
    finally:
        kernel.run("%config TimeoutMagics.grace = 1.0")
    assert result.ename == "CellTimeoutError"
    assert elapsed(kernel) <= 0.3 + 3  # SIGKILL at once: not after the 10 s grace (nor 30 s)
    assert wait_until(lambda: not running("30.22"), 3)


def test_grandchildren_and_a_tree_that_ignores_sigterm_are_stopped(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5 -g 0.3
        p = subprocess.Popen(["bash", "-c", "trap '' TERM; (trap '' TERM; sleep 30.23; true) & sleep 30.24; wait"])
        p.wait()
    """))
    assert result.ename == "CellTimeoutError"
    assert wait_until(lambda: not running("30.23") and not running("30.24"), 3)


def test_the_popen_of_a_stopped_process_tells_how_it_ended(kernel):
    result = kernel.run("%%timeout 0.5\nstopped_p = subprocess.Popen(['sleep', '30.25'])\nstopped_p.wait()")
    assert result.ename == "CellTimeoutError"
    assert kernel.value("stopped_p.returncode") == -signal.SIGTERM  # not 0: it did not succeed


def test_processes_from_before_the_cell_are_left_alone(kernel):
    assert kernel.run("older = subprocess.Popen(['sleep', '30.31'])").status == "ok"
    try:
        result = kernel.run("%%timeout 0.5\n!sleep 30.32")
        assert result.ename == "CellTimeoutError"
        assert kernel.value("older.poll()") is None
        assert running("30.31")
    finally:
        kernel.run("older.kill(); older.wait()")


def test_a_cell_that_finishes_leaves_what_it_started_running(kernel):
    # Stopping a cell stops what it started; a cell that finished was not stopped.
    result = kernel.run("%%timeout 1\nserver = subprocess.Popen(['sleep', '30.33'])\n'started'")
    assert result.status == "ok"
    try:
        assert kernel.run("%%timeout 0.3\nwhile True: pass").ename == "CellTimeoutError"
        assert kernel.value("server.poll()") is None
    finally:
        kernel.run("server.kill(); server.wait()")


def test_a_cell_whose_own_code_caught_the_stop_of_an_inner_limit_keeps_its_processes(kernel):
    result = kernel.run(cell("""
        %%timeout 5
        helper = subprocess.Popen(['sleep', '30.34'])
        try:
            with nbtimeout.timeout(0.2):
                while True: pass
        except TimeoutError:
            inner_caught = True
        helper.poll()
    """))
    assert result.status == "ok", result.traceback
    try:
        assert kernel.value("helper.poll()") is None
    finally:
        kernel.run("helper.kill(); helper.wait()")


def run_interrupted(kernel: Kernel, code: str, ready: Callable[[], bool]) -> Result:
    """Run ``code``, press ■ once ``ready()`` holds, and return what the front end saw.

    ■ is what jupyter_client sends for it: SIGINT to the kernel's process group (from a plain
    thread: the kernel client and its event loops stay on this one).
    """
    def press() -> None:
        if wait_until(ready, 10):
            os.killpg(os.getpgid(kernel.pid), signal.SIGINT)

    presser = threading.Thread(target=press)
    presser.start()
    try:
        return kernel.run(code)
    finally:
        presser.join()


def test_interrupt_stops_what_the_cell_started(kernel):
    # SIGINT reaches the kernel's process group; a process that ignores it must still be stopped.
    code = cell("""
        %%timeout 30
        _t0 = time.monotonic()
        subprocess.Popen(["bash", "-c", "trap '' INT; sleep 30.41; true"]).wait()
    """)
    result = run_interrupted(kernel, code, lambda: bool(running("30.41")))
    assert result.ename == "KeyboardInterrupt"
    assert result.traceback.rstrip().endswith("KeyboardInterrupt:")
    assert "nbtimeout/" not in result.traceback.split(".wait()")[-1]  # ends in the user's code, not ours
    assert wait_until(lambda: not running("30.41"), 3), running("30.41")


def test_interrupt_stops_a_shell_line(kernel):
    run_interrupted(kernel, "%%timeout 30\n!sleep 30.42", lambda: bool(running("30.42")))
    assert wait_until(lambda: not running("30.42"), 3)


def test_fork_children_and_map_workers_in_a_stopped_signal_cell_are_their_engines_own(kernel):
    result = kernel.run(cell("""
        %%timeout 1
        @nbtimeout.timeout(20, mode="fork")
        def forked():
            time.sleep(30)
        forked()
    """))
    assert result.ename == "CellTimeoutError"
    result = kernel.run(cell("""
        %%timeout 1
        mapped = nbtimeout.map(time.sleep, [0.1, 0.1], timeout=20, workers=2)
        while True: pass
    """))
    assert result.ename == "CellTimeoutError"
    assert kernel.run("1").status == "ok"


STARTED_SCRIPT = """
import subprocess, threading, time
from nbtimeout._process import tree
older = subprocess.Popen(["sleep", "30"])
from_a_thread = []
threading.Thread(target=lambda: from_a_thread.append(subprocess.Popen(["sleep", "30"]))).start()
time.sleep(0.05)  # both exist well before the cell starts (start times count in 10 ms ticks)
started = tree.Started()
newer = subprocess.Popen(["sleep", "30"])
_, direct = started.new()
started.stop(grace=1)
print(direct == {newer.pid}, newer.returncode, older.poll(), from_a_thread[0].poll(), tree._FAST)
for p in (older, from_a_thread[0]):
    p.kill(); p.wait()
"""


@pytest.mark.parametrize("portable", ["0", "1"])
def test_started_tells_new_children_from_older_ones_with_and_without_proc(portable):
    # NBTIMEOUT_PORTABLE=1 takes the path macOS has: start times alone, no /proc.
    out = subprocess.run([sys.executable, "-c", STARTED_SCRIPT], capture_output=True, text=True, check=True,
                         env={**os.environ, "NBTIMEOUT_PORTABLE": portable}).stdout.split()
    fast = str(portable == "0" and os.path.exists("/proc/thread-self/children"))
    assert out == ["True", str(-signal.SIGTERM), "None", "None", fast]


def test_started_leaves_out_nbtimeouts_own_forks():
    from nbtimeout._process import tree
    from nbtimeout._process.forking import fork

    started = tree.Started()
    own = fork(lambda: (time.sleep(30), os._exit(0)))  # type: ignore[func-returns-value]
    theirs = subprocess.Popen(["sleep", "30.51"])
    try:
        assert wait_until(lambda: os.getpgid(own) == own)
        _procs, direct = started.new()
        assert direct == {theirs.pid}
        started.stop(grace=1)
        assert theirs.returncode == -signal.SIGTERM
        assert psutil.Process(own).status() != psutil.STATUS_ZOMBIE
    finally:
        os.kill(own, signal.SIGKILL)
        os.waitpid(own, 0)
        theirs.kill()
        theirs.wait()


def test_the_thread_engine_in_a_subshell_stops_what_its_cell_started(kernel):
    sid = kernel.create_subshell()
    code = "%%timeout 0.5\nimport subprocess\nsubprocess.Popen(['sleep', '30.61']).wait()"
    result = kernel.run_in_subshell(sid, code)
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 500 ms limit (thread engine)"
    assert wait_until(lambda: not running("30.61"), 3)


def test_a_nested_timed_cell_stops_only_what_it_started(kernel):
    result = kernel.run(cell("""
        %%timeout 5
        outer_p = subprocess.Popen(['sleep', '30.62'])
        get_ipython().run_cell_magic('timeout', '0.3', "inner_p = subprocess.Popen(['sleep', '30.63']); inner_p.wait()")
        (outer_p.poll(), inner_p.poll())
    """))
    # the inner limit's error reaches the outer cell, as any exception would: the outer limit did not fire
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 300 ms limit (signal engine)"
    assert kernel.value("inner_p.returncode") == -signal.SIGTERM
    assert kernel.value("outer_p.poll()") is None
    kernel.run("outer_p.kill(); outer_p.wait()")


def test_a_run_whose_processes_the_watcher_stopped_ends_as_stopped_even_if_no_alarm_came():
    # The watcher acts past the deadline; if the body then returns before any engine delivered
    # its stop (a loaded machine), the run still ends as stopped.
    from nbtimeout._errors import CellTimeoutError
    from nbtimeout._notebook.inkernel import _Guard
    from nbtimeout._notebook.options import Options

    guard = _Guard(Options(0.2, grace=0.5))
    status = os.system("sleep 30.71")  # no alarm is armed: only the watcher can end this
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
    with pytest.raises(CellTimeoutError, match="200 ms"):
        guard.ended(None)
    assert not running("30.71")
