"""``%%timeout`` on the signal engine, seen from the front end of a real kernel (issue 2)."""

from __future__ import annotations

import re
import textwrap

import pytest
from kernelclient import Kernel

pytestmark = pytest.mark.timeout(120)

SIG_STATE = "(signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))"
CLEAN = (True, (0.0, 0.0))  # default handler, no timer: what the kernel has before any %%timeout


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import signal, sys, time, nbtimeout").status == "ok"


@pytest.fixture(autouse=True)
def _no_alarm_left(kernel):
    """After every test the kernel has the default SIGALRM handler and no timer armed."""
    yield
    assert kernel.value(SIG_STATE) == CLEAN


def defined(kernel: Kernel, name: str) -> bool:
    return kernel.value(f"{name!r} in globals()")


# --- time runs out -------------------------------------------------------------------------------

def test_timeout_is_the_cells_error_with_the_running_line(kernel):
    result = kernel.run(cell("""
        %%timeout 0.2
        _t0 = time.monotonic()
        spins = 0
        while True: spins += 1  # spinning-here
    """))
    assert result.status == "error"
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 200 ms limit (signal engine)"
    tb = result.traceback
    assert re.search(r"Cell In\[\d+\], line 4", tb), tb
    assert re.search(r"----> 4 while True: spins \+= 1  # spinning-here", tb), tb
    assert "nbtimeout/_engines" not in tb  # the handler that raised is not the user's business
    assert 0.15 <= kernel.value("time.monotonic() - _t0") <= 1.5
    assert kernel.value("isinstance(sys.last_value, TimeoutError)")
    # state the body made before the limit stays (the signal engine runs in the kernel)
    assert kernel.value("spins > 0")


def test_next_cell_runs_normally(kernel):
    assert kernel.run("%%timeout 0.1\nwhile True: pass").ename == "CellTimeoutError"
    result = kernel.run("print('next cell'); 6 * 7")
    assert result.status == "ok"
    assert result.stream() == "next cell\n"
    assert result.out == "42"


@pytest.mark.parametrize(("written", "seconds"), [
    ("150ms", 0.15), ("0.2s", 0.2), ("0.004m", 0.24), ("0.0001h", 0.36), ("2.5E-1", 0.25),
])
def test_durations_with_units(kernel, written, seconds):
    result = kernel.run(f"%%timeout {written}\n_t0 = time.monotonic()\nwhile True: pass")
    assert result.ename == "CellTimeoutError"
    assert f"{seconds * 1000:.0f} ms" in result.evalue
    # the unit is honoured: "0.004m" is 0.24 s, not 0.004 s
    assert seconds * 0.75 <= kernel.value("time.monotonic() - _t0") <= seconds + 1.5


def test_except_exception_retry_loop_cannot_keep_the_cell_alive(kernel):
    result = kernel.run(cell("""
        %%timeout 0.2
        retries = 0
        while True:
            try:
                time.sleep(0.01)
                raise ConnectionError("flaky")
            except Exception:
                retries += 1
    """))
    assert result.ename == "CellTimeoutError"
    assert kernel.value("retries") > 0


def test_limits_nest(kernel):
    # The example is an inner 0.2 s inside %%timeout 2; 0.5 s keeps the suite fast.
    result = kernel.run(cell("""
        %%timeout 0.5
        _t0 = time.monotonic()
        try:
            with nbtimeout.timeout(0.2):
                while True: pass
        except TimeoutError as err:
            inner = (type(err).__name__, err.limit, time.monotonic() - _t0)
        while True: pass
    """))
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 500 ms limit (signal engine)"
    name, limit, caught_at = kernel.value("inner")
    assert (name, limit) == ("CellTimeoutError", 0.2)
    assert 0.15 <= caught_at <= 1.5
    outer_at = kernel.value("time.monotonic() - _t0")
    assert caught_at < outer_at
    assert 0.45 <= outer_at <= 2.0


def test_inner_handler_cannot_catch_the_outer_limit(kernel):
    result = kernel.run(cell("""
        %%timeout 0.2
        absorbed = False
        try:
            with nbtimeout.timeout(5):
                while True: pass
        except TimeoutError:
            absorbed = True
    """))
    assert result.ename == "CellTimeoutError"
    assert "200 ms" in result.evalue
    assert kernel.value("absorbed") is False


def test_existing_sigalrm_handler_and_itimer_are_restored(kernel):
    setup = cell("""
        alarms = []
        def on_alarm(signum, frame):
            alarms.append(signum)
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 5, 7)
    """)
    assert kernel.run(setup).status == "ok"
    try:
        assert kernel.run("%%timeout 0.1\nwhile True: pass").ename == "CellTimeoutError"
        assert kernel.run("%%timeout 0.5\nx_after_restore = 1").status == "ok"
        handler_is_ours, (left, interval) = kernel.value(
            "(signal.getsignal(signal.SIGALRM) is on_alarm, signal.getitimer(signal.ITIMER_REAL))")
        assert handler_is_ours
        assert 3.0 < left <= 5.0
        assert interval == 7.0
        assert kernel.value("alarms") == []
    finally:
        kernel.run("signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, signal.SIG_DFL)")


def test_no_alarm_left_armed_after_any_kind_of_end(kernel):
    assert kernel.value(SIG_STATE) == CLEAN
    for code in ("%%timeout 0.1\nwhile True: pass", "%%timeout 0.5\n1", "%%timeout 0.5\n1/0",
                 "%%timeout 0.1 -c\nwhile True: pass"):
        kernel.run(code)
        assert kernel.value(SIG_STATE) == CLEAN, code


# --- a cell that finishes ------------------------------------------------------------------------

def test_finished_cell_shows_out_and_sets_underscore(kernel):
    result = kernel.run("%%timeout 0.5\nanswer = 6 * 7\nanswer")
    assert result.status == "ok"
    assert result.out == "42"
    n = result.reply["execution_count"]
    assert kernel.value(f"(_ , Out[{n}], answer)") == (42, 42, 42)
    assert not [d for d in result.displays() if "Stopped" in d]  # no banner on a cell that finished


def test_finished_cell_without_trailing_expression_has_no_out(kernel):
    result = kernel.run("%%timeout 0.5\nno_out = 1")
    assert result.status == "ok"
    assert result.out is None


def test_exceptions_are_the_cells_error_with_a_normal_traceback(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5
        def explode():
            raise ValueError("boom")
        explode()
    """))
    assert result.status == "error"
    assert (result.ename, result.evalue) == ("ValueError", "boom")
    tb = result.traceback
    assert "----> 4 explode()" in tb
    assert '----> 3     raise ValueError("boom")' in tb
    assert "CellTimeoutError" not in tb
    assert not [d for d in result.displays() if "Stopped" in d]


def test_syntax_error_in_the_body(kernel):
    result = kernel.run("%%timeout 0.5\nsyntax_ran = 1\nif True")
    assert result.ename == "SyntaxError"
    assert not defined(kernel, "syntax_ran")


def test_line_magics_and_shell_lines_in_the_body(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5
        %time magic_value = 3
        !echo from-the-shell
        captured = !echo captured-line
        magic_value, captured[0]
    """))
    assert result.status == "ok", result.traceback
    assert "Wall time" in result.stream()
    assert "from-the-shell" in result.stream()
    assert result.out == "(3, 'captured-line')"


# --- --continue ------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", ["-c -q", "--continue --quiet", "-c"])
def test_continue_is_ok_with_a_one_line_notice(kernel, flags):
    result = kernel.run(f"%%timeout 0.2 {flags}\ncontinued_body = True\nwhile True: pass")
    assert result.status == "ok"
    assert result.of("error") == []
    notices = result.displays()
    if "-q" in flags or "--quiet" in flags:
        assert len(notices) == 1  # quiet: the notice alone, no live countdown
    notice = notices[-1]
    assert "\n" not in notice
    assert "stopped" in notice
    assert "200 ms" in notice
    assert kernel.value("continued_body") is True
    later = kernel.run("'run all goes on'")
    assert (later.status, later.out) == ("ok", "'run all goes on'")


# --- %timeout: a limit on every cell -----------------------------------------------------------------

def test_every_cell_limit(kernel):
    result = kernel.run("%timeout 0.2")
    assert result.status == "ok"
    assert "every cell: %%timeout 0.2" in result.stream()
    try:
        stopped = kernel.run("every_ran = True\nwhile True: pass")
        assert stopped.ename == "CellTimeoutError"
        assert "200 ms" in stopped.evalue
        assert kernel.value("every_ran") is True
        # a finished cell under the every-cell limit still shows Out[n]
        assert kernel.run("'fine'").out == "'fine'"
        # a cell with its own %%timeout keeps its own (0.3 s of work under 0.5 s, past 0.2 s)
        own = kernel.run(cell("""
            %%timeout 0.5
            _t0 = time.monotonic()
            while time.monotonic() - _t0 < 0.3: pass
            'kept its own'
        """))
        assert own.status == "ok", own.evalue
        assert own.out == "'kept its own'"
    finally:
        off = kernel.run("%timeout off")
    assert off.status == "ok"
    assert "every cell: off" in off.stream()
    free = kernel.run("_t0 = time.monotonic()\nwhile time.monotonic() - _t0 < 0.3: pass\n'free'")
    assert (free.status, free.out) == ("ok", "'free'")


def test_every_cell_traceback_numbers_the_lines_the_user_wrote(kernel):
    assert kernel.run("%timeout 0.2").status == "ok"
    try:
        result = kernel.run("every_tb = 1\nwhile True: pass  # loop-line")
    finally:
        kernel.run("%timeout off")
    assert result.ename == "CellTimeoutError"
    # the cell has no %%timeout line of its own: the loop is its line 2, as the notebook shows it
    assert "----> 2 while True: pass  # loop-line" in result.traceback
    assert "1 every_tb = 1" in result.traceback


def test_every_cell_limit_with_options(kernel):
    assert kernel.run("%timeout 150ms -c -q").status == "ok"
    try:
        result = kernel.run("while True: pass")
        assert result.status == "ok"
        assert len(result.displays()) == 1
        assert "150 ms" in result.displays()[0]
    finally:
        kernel.run("%timeout off")


def test_every_cell_limit_refuses_bad_input_and_keeps_the_old(kernel):
    result = kernel.run("%timeout abc")
    assert result.ename == "UsageError"
    assert "'abc'" in result.evalue
    assert "every cell: off" in kernel.run("%timeout").stream()


def test_timeout_alone_prints_the_settings(kernel):
    result = kernel.run("%timeout")
    assert result.status == "ok"
    out = result.stream()
    assert "every cell: off" in out
    assert "default_mode: auto" in out
    assert "grace:" in out
    assert "quiet: False" in out


# --- settings -------------------------------------------------------------------------------------

def test_config_magic(kernel):
    listing = kernel.run("%config TimeoutMagics").stream()
    for name in ("default_mode", "every_cell", "grace", "quiet"):
        assert f"TimeoutMagics.{name}" in listing
    assert kernel.run("%config TimeoutMagics.every_cell = '0.2'").status == "ok"
    try:
        assert kernel.run("while True: pass").ename == "CellTimeoutError"
        assert "every cell: %%timeout 0.2" in kernel.run("%timeout").stream()
    finally:
        kernel.run("%config TimeoutMagics.every_cell = ''")
    assert kernel.run("%config TimeoutMagics.quiet = True").status == "ok"
    try:
        assert "quiet: True" in kernel.run("%timeout").stream()
    finally:
        kernel.run("%config TimeoutMagics.quiet = False")
    # %config reports a refused value on stderr (IPython's way) and the setting stays
    bad = kernel.run("%config TimeoutMagics.default_mode = 'threads'")
    assert "'threads'" in bad.stream("stderr")
    assert "default_mode: auto" in kernel.run("%timeout").stream()
    bad_every = kernel.run("%config TimeoutMagics.every_cell = 'nan'")
    assert "limit 'nan' must be finite" in bad_every.stream("stderr")
    assert "every cell: off" in kernel.run("%timeout").stream()


def test_ipython_config_loads_the_extension_with_settings(tmp_path):
    profile = tmp_path / "profile_default"
    profile.mkdir()
    (profile / "ipython_config.py").write_text(cell("""
        c.InteractiveShellApp.extensions = ["nbtimeout"]
        c.TimeoutMagics.default_mode = "fork"
        c.TimeoutMagics.every_cell = "0.2 -m signal"
        c.TimeoutMagics.grace = 2.5
    """))
    configured = Kernel(extra_env={"IPYTHONDIR": str(tmp_path)})
    try:
        settings = configured.run("%timeout").stream()
        assert "every cell: %%timeout 0.2 -m signal" in settings
        assert "default_mode: fork" in settings
        assert "grace: 2.5 s" in settings
        result = configured.run("while True: pass")  # no %load_ext: the config loaded it
        assert result.ename == "CellTimeoutError"
        assert result.evalue == "ran past its 200 ms limit (signal engine)"
        assert configured.run("%config TimeoutMagics.default_mode").out == "'fork'"
    finally:
        configured.shutdown()


def test_unload_removes_everything_and_load_brings_it_back(fresh_kernel):
    k = fresh_kernel
    assert k.run("%load_ext nbtimeout").status == "ok"
    assert k.run("%timeout 0.1").status == "ok"
    assert k.run("%unload_ext nbtimeout").status == "ok"
    gone = k.run("%%timeout 0.5\nunloaded_ran = 1")
    assert gone.ename == "UsageError"
    assert "not found" in gone.evalue
    assert k.run("%timeout").ename == "UsageError"
    # the every-cell hook went with the magics: a slow cell is no longer stopped
    slow = k.run("import time\n_t0 = time.monotonic()\nwhile time.monotonic() - _t0 < 0.3: pass\n'free'")
    assert (slow.status, slow.out) == ("ok", "'free'")
    assert "TimeoutMagics" not in k.run("%config").stream()
    assert k.run("%load_ext nbtimeout").status == "ok"
    assert k.run("%%timeout 0.1\nwhile True: pass").ename == "CellTimeoutError"
    assert "every cell: off" in k.run("%timeout").stream()


def test_usage_from_question_mark(kernel):
    result = kernel.run("%%timeout?")
    assert result.status == "ok"
    pages = [p["data"]["text/plain"] for p in result.reply.get("payload", []) if p.get("source") == "page"]
    text = pages[0] if pages else result.stream()
    for part in ("%%timeout 5.01", "--continue", "--mode", "500ms", "%timeout off"):
        assert part in text


# --- misuse ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    ("abc", "'abc'"),
    ("-1", "'-1'"),
    ("0", "'0'"),
    ("nan", "'nan'"),
    ("inf", "'inf'"),
    ("", "give a time limit"),
    ("1 --bogus", "--bogus"),
    ("1 -m threads", "'threads'"),
    ("1 extra words", "extra words"),
    ("1 --memory 1GB", "--memory works only with --mode fork"),
    ("1 -g abc", "'abc'"),
])
def test_misuse_is_a_one_line_usage_error_and_the_body_does_not_run(kernel, args, says):
    marker = f"misuse_ran_{abs(hash(args))}"
    result = kernel.run(f"%%timeout {args}\n{marker} = True")
    assert result.status == "error"
    assert result.ename == "UsageError"
    assert says in result.evalue
    assert "\n" not in result.evalue
    assert result.of("error") == []  # no traceback, just the line on stderr
    assert result.stream("stderr").strip().count("\n") == 0
    assert not defined(kernel, marker)


def test_magic_off_the_main_thread_runs_on_the_thread_engine(kernel):
    result = kernel.run(cell("""
        import threading
        thread_errors = []
        def in_thread(line):
            try:
                get_ipython().run_cell_magic("timeout", line, "thread_body_ran = True\\nwhile True: pass")
            except BaseException as err:
                thread_errors.append((type(err).__name__, str(err)))
        for line in ("0.2", "0.2 -m signal"):
            t = threading.Thread(target=in_thread, args=(line,), name="subshell-like")
            t.start(); t.join(10)
    """))
    assert result.status == "ok", result.traceback
    [(name, message), (refused, says)] = kernel.value("thread_errors")
    assert (name, message) == ("CellTimeoutError", "ran past its 200 ms limit (thread engine)")
    assert defined(kernel, "thread_body_ran")
    assert refused == "UsageError"
    assert "main thread" in says
    assert "-m thread" in says


# --- the Python API in a cell --------------------------------------------------------------------

def test_api_context_manager_in_a_cell(kernel):
    result = kernel.run(cell("""
        with nbtimeout.timeout(0.2):
            while True: pass
    """))
    assert result.ename == "CellTimeoutError"
    assert "200 ms" in result.evalue
    # IPython draws the cell frame's two entries (the with-line, then the loop) both at the with-line
    assert "----> 1 with nbtimeout.timeout(0.2):" in result.traceback


def test_api_decorator_in_a_cell(kernel):
    result = kernel.run(cell("""
        @nbtimeout.timeout("200ms")
        def work(n):
            while True: n += 1
        @nbtimeout.timeout(0.5)
        def quick(n):
            return n * 2
        quick_value = quick(21)
        work(0)
    """))
    assert result.ename == "CellTimeoutError"
    assert kernel.value("quick_value") == 42
    assert "----> 3     while True: n += 1" in result.traceback


def test_api_off_the_main_thread_takes_the_thread_engine(kernel):
    result = kernel.run(cell("""
        import threading
        api_errors = []
        def in_thread():
            try:
                with nbtimeout.timeout(0.2):
                    while True: pass
            except Exception as err:
                api_errors.append((type(err).__name__, err.engine))
        t = threading.Thread(target=in_thread); t.start(); t.join(10)
    """))
    assert result.status == "ok"
    assert kernel.value("api_errors") == [("CellTimeoutError", "thread")]
