"""In-kernel limits that always land and are never swallowed (issue 21), through a real kernel:
a limit left by a suspended generator or a hand-stepped coroutine hides no later one; a C call
first in a cell is stopped when it returns; a stop is not lost in ``__del__`` or a bare ``except:``;
kernel subshells keep their own limits; a cell stops only the processes its own code started;
nbtimeout's signal handling stays out of the user's sight.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from nbtimeout._errors import CellTimeoutError
from nbtimeout._notebook.banner import bundle

pytestmark = pytest.mark.timeout(180)

ENGINES = ["signal", "thread"]


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import gc, re, signal, sys, time, asyncio, threading, subprocess, nbtimeout\n"
                      "from nbtimeout import timeout").status == "ok"


@pytest.fixture(autouse=True)
def _watchdog_fine(kernel):
    yield
    assert kernel.value("list(nbtimeout._engines.watchdog.errors)") == []


def timed(kernel, code: str, timeout: float = 60):
    start = time.monotonic()
    result = kernel.run(code, timeout)
    return result, time.monotonic() - start


# --- a limit that is not armed, or is disarmed by an earlier cell -------------------------------

BUSY_LIMITED = cell("""
    start = time.monotonic()
    try:
        with timeout(0.3, mode={engine!r}):
            while time.monotonic() - start < 3: pass
        print('not stopped', round(time.monotonic() - start, 1))
    except nbtimeout.CellTimeoutError:
        print('stopped', round(time.monotonic() - start, 1))
""")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_generator_suspended_inside_its_limit_turns_off_no_later_limit(kernel, engine):
    assert kernel.run(cell(f"""
        def held():
            with timeout(0.2, mode={engine!r}):
                yield 1
                yield 2
        g = held(); next(g)
        time.sleep(0.4)  # its limit expires while it is suspended
    """)).status == "ok"
    try:
        result = kernel.run(BUSY_LIMITED.format(engine=engine))
        assert result.stream() == "stopped 0.3\n", result.traceback
        result, took = timed(kernel, "%%timeout 0.5\nt = time.monotonic()\nwhile time.monotonic() - t < 4: pass")
        assert result.ename == "CellTimeoutError", result.traceback
        assert took < 2.5
    finally:
        kernel.run("del g; gc.collect()")


def test_an_abandoned_generator_inside_an_outer_limit_keeps_its_own(kernel):
    # The outer block ends while the generator is suspended inside its limit: that limit is not the
    # outer block's to cancel, and it hides nothing after.
    assert kernel.run(cell("""
        def held():
            with timeout(0.2):
                yield 1
                while True: pass
        with timeout(5):
            g = held(); next(g)
    """)).status == "ok"
    try:
        result, took = timed(kernel, "time.sleep(0.3)\ntry:\n    next(g)\nexcept nbtimeout.CellTimeoutError:\n"
                                     "    print('generator stopped')")
        assert result.stream() == "generator stopped\n", result.traceback
        assert took < 2.5
        assert kernel.run(BUSY_LIMITED.format(engine="signal")).stream() == "stopped 0.3\n"
    finally:
        kernel.run("del g; gc.collect()")


def test_a_coroutine_stepped_by_hand_inside_its_limit_leaves_the_kernel_and_later_limits_alone(kernel):
    result = kernel.run(cell("""
        async def waits():
            async with timeout(0.2):
                await asyncio.sleep(100)
        c = waits()
        c.send(None)  # suspended on its sleep, driven by no task
        time.sleep(0.4)
        print('kernel alive')
    """))
    assert (result.status, result.stream()) == ("ok", "kernel alive\n"), result.traceback
    try:
        assert kernel.run("print('next cell')").stream() == "next cell\n"
        result, took = timed(kernel, "%%timeout 0.5\nwhile True: pass")
        assert result.ename == "CellTimeoutError", result.traceback
        assert took < 2.5
    finally:
        kernel.run("c.close(); del c")


def test_a_c_call_first_in_a_cell_is_stopped_as_it_returns(kernel):
    # re holds the GIL throughout: the watchdog thread never runs until it returns; the kernel's
    # timer, set as the limit is armed, has the signal pending when it does.
    assert kernel.run("%%timeout 1\npass").status == "ok"  # the signal engine has chosen its signal
    if not kernel.value("nbtimeout._engines.delivery.SIGNAL.timed()"):
        pytest.skip("no kernel timer here (macOS, NBTIMEOUT_PORTABLE=1): the watchdog sends the stop late")
    result, took = timed(kernel, "%%timeout 0.2\nre.match(r'(a+)+$', 'a' * 25 + 'b')\nprint('after re')")
    assert result.status == "error", (result.stream(), took)
    assert result.ename == "CellTimeoutError"
    assert "after re" not in result.stream()


def test_the_overrun_banner_names_the_engine_that_ran():
    late = bundle(CellTimeoutError(0.2, 3.1, "thread"))["text/plain"]
    assert "the thread engine stops a cell only when it runs Python" in late
    assert "signal engine" not in late.split("limit 200 ms, thread engine")[1]


# --- kernel subshells keep their own limits ---------------------------------------------------------

def test_under_the_every_cell_limit_a_subshell_cell_is_limited_while_the_main_shell_runs_a_timed_cell(kernel):
    subshell = kernel.create_subshell()
    assert kernel.run("%timeout 1").status == "ok"
    try:
        # The main shell's cell (under the limit too) is running when the subshell's starts.
        kernel.client.execute("time.sleep(0.8)", allow_stdin=False)
        start = time.monotonic()
        result = kernel.run_in_subshell(subshell, "_t0 = time.monotonic()\nwhile time.monotonic() - _t0 < 6: pass", 30)
        took = time.monotonic() - start
        # (The subshell's run read the main cell's reply and left it; this waits for the main shell.)
        assert kernel.run("'main shell fine'").out == "'main shell fine'"
    finally:
        kernel.run("%timeout off")
    assert result.ename == "CellTimeoutError", (result.status, result.traceback)
    assert result.evalue == "ran past its 1 s limit (thread engine)"
    assert took < 4


def test_the_budget_charges_cells_that_run_at_once_for_the_time_any_of_them_ran():
    from nbtimeout._notebook.budget import Budget

    budget = Budget(60)
    budget.begin()      # the main shell's cell
    budget.begin()      # a subshell's, at the same time
    time.sleep(0.2)
    budget.end()
    time.sleep(0.2)
    budget.end()
    assert 0.39 <= budget.used <= 1.0  # once for the 0.4 s, not 0.6 s


# --- a stopped cell stops only what its own code started ----------------------------------------

def test_a_stopped_cell_leaves_alone_a_process_a_background_thread_started_during_it(kernel):
    if not kernel.value("__import__('nbtimeout._process.tree').__dict__['_process'].tree._FAST"):
        pytest.skip("which thread forked a child is known only from /proc (Linux)")
    assert kernel.run(cell("""
        go, codes = threading.Event(), []
        def background():
            go.wait()
            codes.append(subprocess.run(['sleep', '1.5']).returncode)
        worker = threading.Thread(target=background)
        worker.start()
    """)).status == "ok"
    result = kernel.run(cell("""
        %%timeout 0.5
        go.set()
        mine = subprocess.Popen(['sleep', '30'])
        while True: pass
    """))
    assert result.ename == "CellTimeoutError", result.traceback
    assert kernel.value("(worker.join(10), codes, mine.returncode)") == (None, [0], -15)


# --- stops that code swallows --------------------------------------------------------------------

SWALLOWERS = {
    "a stop landing in __del__": cell("""
        class Conn:
            def __del__(self):
                time.sleep(0.02)
        while True:
            c = Conn(); del c
    """),
    "a weakref callback": cell("""
        import weakref
        class Thing: pass
        keep = []
        while True:
            t = Thing(); keep.append(weakref.ref(t, lambda r: time.sleep(0.02))); del t
    """),
    "a retry loop with a bare except": cell("""
        while True:
            try:
                time.sleep(10)
            except:
                pass
    """),
    "a bare except in a function it calls": cell("""
        def attempt():
            try:
                time.sleep(10)
            except:
                return 'retry'
        while True:
            try:
                attempt()
            except BaseException:
                pass
    """),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", list(SWALLOWERS))
def test_a_swallowed_stop_still_ends_the_cell_within_the_grace(kernel, name, engine):
    body = SWALLOWERS[name]
    if engine == "thread":  # it stops Python code only: a wait in Python, not time.sleep
        kernel.run("def spin(seconds):\n    t = time.monotonic()\n    while time.monotonic() - t < seconds: pass")
        body = body.replace("time.sleep(10)", "spin(10)")
    result, took = timed(kernel, f"%%timeout 0.5 -g 0.5 -m {engine}\n{body}", 30)
    assert result.ename == "CellTimeoutError", (result.status, result.traceback)
    assert took < 0.5 + 0.5 + 0.5 + 1.0  # limit + grace + 0.5 s, and a loaded machine's second
    assert "Exception ignored" not in result.stream("stderr")
    assert kernel.value("sys.gettrace()") is None  # the trace function of before
    result, took = timed(kernel, "%%timeout 0.3\nwhile True: pass")  # the next limit is on time
    assert result.ename == "CellTimeoutError"
    assert took < 1.5


def test_a_swallowed_stop_keeps_the_users_trace_function(kernel):
    assert kernel.run("def tracer(frame, event, arg):\n    return tracer").status == "ok"
    body = SWALLOWERS["a retry loop with a bare except"]
    result, took = timed(kernel, f"%%timeout 0.3 -g 0.2\nsys.settrace(tracer)\n{body}")
    try:
        assert result.ename == "CellTimeoutError", result.traceback
        assert took < 2.5
        assert kernel.value("sys.gettrace() is tracer")
    finally:
        kernel.run("sys.settrace(None)")


# --- nbtimeout's signal handling stays out of the user's sight -----------------------------------

def test_inside_a_cell_under_the_every_cell_limit_getsignal_shows_the_handler_of_before(kernel):
    before = kernel.value("repr(signal.getsignal(signal.SIGINT))")
    assert kernel.run("%timeout 10").status == "ok"
    try:
        inside = kernel.run("print(repr(signal.getsignal(signal.SIGINT)))").stream().strip()
        handler_of_their_own = kernel.run(cell("""
            def mine(signum, frame):
                pass
            previous = signal.signal(signal.SIGINT, mine)
            print(repr(previous))
        """))
    finally:
        kernel.run("%timeout off")
    assert inside == before
    assert handler_of_their_own.stream().strip() == before


def test_a_handler_the_user_puts_on_nbtimeouts_signal_stays_and_the_limits_move(kernel):
    assert kernel.run("%%timeout 1\npass").status == "ok"
    ours = kernel.value("nbtimeout._engines.delivery.SIGNAL.signum")
    assert kernel.run(f"got = []\nsignal.signal({ours}, lambda s, f: got.append(s))").status == "ok"
    result, took = timed(kernel, "%%timeout 0.3\nwhile True: pass")
    assert result.ename == "CellTimeoutError", result.traceback
    assert took < 2
    told = result.stream("stderr")
    assert f"signal {ours} now has a handler of yours, which stays" in told
    assert told.count("\n") == 1
    assert kernel.run(f"signal.raise_signal({ours}); print(got)").stream() == f"[{ours}]\n"
    kernel.run(f"signal.signal({ours}, signal.SIG_DFL)")
