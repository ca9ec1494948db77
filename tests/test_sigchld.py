"""Fork mode and ``nbtimeout.map`` whatever the program did with SIGCHLD (issue 17.2).

With SIGCHLD ignored the system reaps nbtimeout's children itself; a program's reaping handler may
reap them first. Either way ``waitpid`` on them fails, so the answer must not rest on it: each
disposition gets the same answers (timeouts, crashes, exit codes, values, map outcomes), through a
real kernel, and leaves no child behind.
"""

from __future__ import annotations

import textwrap
import time

import pytest
from kernelclient import Kernel
from procs import children, wait_until

pytestmark = pytest.mark.timeout(120)

SETUPS = {
    "default": "signal.signal(signal.SIGCHLD, signal.SIG_DFL)",
    "ignored": "signal.signal(signal.SIGCHLD, signal.SIG_IGN)",
    # What servers and shells do: reap every child that ended, whoever started it.
    "handled": textwrap.dedent("""
        def _reap_all(signum, frame):
            try:
                while (pid := os.waitpid(-1, os.WNOHANG)[0]):
                    reaped.append(pid)
            except ChildProcessError:
                pass
        signal.signal(signal.SIGCHLD, _reap_all)
    """),
}

TASKS = textwrap.dedent("""
    def task(kind):
        if kind == "sleep":
            time.sleep(30)
        if kind == "segfault":
            import ctypes; ctypes.string_at(0)
        if kind == "exit":
            os._exit(4)
        return kind.upper()
""")


@pytest.fixture(scope="module", params=list(SETUPS))
def kernel(request):
    k = Kernel()
    code = f"%load_ext nbtimeout\nimport os, signal, time, nbtimeout\nreaped = []\n{SETUPS[request.param]}\n{TASKS}"
    assert k.run(code).status == "ok"
    k.disposition = request.param
    yield k
    k.shutdown()


@pytest.fixture(autouse=True)
def _no_child_left(kernel):
    yield
    assert wait_until(lambda: not children(kernel.pid)), children(kernel.pid)


def test_a_fork_cell_that_finishes_syncs_its_value(kernel):
    result = kernel.run("%%timeout 5 -m fork\nx = 6 * 7\nx")
    assert result.status == "ok", result.traceback
    assert result.out == "42"
    assert kernel.value("x") == 42


def test_a_fork_cell_past_its_limit_is_a_timeout(kernel):
    started = time.monotonic()
    result = kernel.run("%%timeout 0.3 -m fork\ntime.sleep(30)")
    took = time.monotonic() - started
    assert (result.status, result.ename) == ("error", "CellTimeoutError"), result.traceback
    assert 0.25 < took < 1.5, took


@pytest.mark.parametrize(("body", "named"), [
    ("import ctypes; ctypes.string_at(0)", "killed by SIGSEGV"),
    ("os._exit(3)", "exited with code 3"),
])
def test_a_crash_is_named_at_once(kernel, body, named):
    started = time.monotonic()
    result = kernel.run(f"%%timeout 10 -m fork\n{body}")
    took = time.monotonic() - started
    assert (result.status, result.ename) == ("error", "CellCrashedError"), result.traceback
    assert named in result.evalue
    assert took < 1.0, took
    assert kernel.value("1 + 1") == 2


def test_the_api_gives_values_errors_and_timeouts(kernel):
    result = kernel.run(textwrap.dedent("""
        @nbtimeout.timeout(5, mode="fork")
        def double(n):
            return 2 * n
        @nbtimeout.timeout(0.3, mode="fork")
        def slow():
            time.sleep(30)
        @nbtimeout.timeout(5, mode="fork")
        def fails():
            raise KeyError("k")
        got = [double(21)]
        for f in (slow, fails):
            try:
                f()
            except Exception as e:
                got.append(type(e).__name__)
        got
    """))
    assert result.status == "ok", result.traceback
    assert result.out == "[42, 'CellTimeoutError', 'KeyError']"


def test_map_gives_every_task_its_outcome(kernel):
    kinds = ["ok", "sleep", "segfault", "exit", "fine"]
    result = kernel.run(f"r = nbtimeout.map(task, {kinds!r}, timeout=0.3, workers=2)\n"
                        "[o.status for o in r], r.values()")
    assert result.status == "ok", result.traceback
    assert result.out == "(['finished', 'stopped', 'crashed', 'crashed', 'finished'], ['OK', 'FINE'])"
    assert kernel.value("str(r[3].error)").startswith("the fork child exited with code 4")
    assert kernel.value("type(r[1].error).__name__") == "CellTimeoutError"


def test_the_scenario_is_real_the_programs_handler_reaps_nbtimeouts_children(kernel):
    before = kernel.value("len(reaped)")
    reaped = 0
    # The handler races nbtimeout's own waitpid: give it up to 40 children to win once (bounded).
    for n in range(40 if kernel.disposition == "handled" else 5):
        code = n % 5 + 1
        result = kernel.run(f"%%timeout 10 -m fork\nos._exit({code})")
        assert f"exited with code {code}" in result.evalue
        reaped = kernel.value("len(reaped)") - before
        if reaped:
            break
    # With a handler the program reaps fork children itself (so waitpid could not have told), at
    # least some of the time: it races nbtimeout's own waitpid.
    assert (reaped > 0) == (kernel.disposition == "handled"), reaped
