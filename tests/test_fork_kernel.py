"""``%%timeout -m fork`` and ``timeout(mode="fork")`` seen from the front end of a real kernel (issue 3)."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import textwrap
import threading
import time

import pytest
from kernelclient import Kernel
from procs import children, exited, wait_until

pytestmark = pytest.mark.timeout(120)


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    # matplotlib is imported in the kernel once (font cache), as a notebook user's kernel would have it
    setup = ("import os, sys, time, signal, subprocess, nbtimeout\n"
             "%matplotlib inline\nimport matplotlib.pyplot as plt")
    assert kernel.run(setup, timeout=120).status == "ok"


def gone(pid: int) -> bool:
    """The process has exited (a zombie of another parent counts: the kernel does not own it)."""
    return exited(pid, reaper=_kernel_pid)


_kernel_pid = -1


def no_children(kernel: Kernel) -> bool:
    return wait_until(lambda: not children(kernel.pid))


@pytest.fixture(autouse=True)
def _no_child_left(kernel):
    """After every test the kernel has no child process left (reaped, nothing orphaned to it)."""
    global _kernel_pid
    _kernel_pid = kernel.pid
    yield
    assert no_children(kernel), children(kernel.pid)


def pidfile() -> str:
    fd, path = tempfile.mkstemp(prefix="nbtimeout-", dir="/tmp")
    os.close(fd)
    os.unlink(path)
    return path


def read_pids(path: str, count: int, seconds: float = 10) -> list[int]:
    def ready():
        try:
            with open(path) as f:
                return len(f.read().split()) >= count
        except FileNotFoundError:
            return False
    assert wait_until(ready, seconds), f"{path} never got {count} pids"
    with open(path) as f:
        return [int(p) for p in f.read().split()]


# --- output --------------------------------------------------------------------------------------

def test_output_of_every_kind_arrives_in_order(kernel):
    result = kernel.run(cell("""
        %%timeout 2 -m fork
        print('a')
        sys.stderr.write('err1\\n')
        os.write(1, b'raw1\\n')
        print('b')
        os.write(2, b'raw2\\n')
        import ctypes; ctypes.CDLL(None).printf(b'from C\\n')
        subprocess.run(['echo', 'sub'])
        print('c')
        !echo bang
        print('z')
    """))
    assert result.status == "ok", result.traceback
    assert result.stream("stdout").replace("\r\n", "\n") == "a\nraw1\nb\nfrom C\nsub\nc\nbang\nz\n"
    assert result.stream("stderr") == "err1\nraw2\n"


def test_displays_updates_and_clear_output_in_order_with_prints(kernel):
    result = kernel.run(cell("""
        %%timeout 2 -m fork -q
        from IPython.display import display, clear_output
        print('before')
        h = display('one', display_id=True)
        print('middle')
        h.update('two')
        clear_output()
        display('three')
        print('after')
    """))
    assert result.status == "ok", result.traceback
    seen: list[tuple[str, str | None]] = []
    for m in result.of("stream", "display_data", "update_display_data", "clear_output"):
        if m["msg_type"] == "stream" and seen and seen[-1][0] == "stream":
            seen[-1] = ("stream", seen[-1][1] + m["content"]["text"])  # as a front end joins them
        else:
            data = m["content"].get("data", {})
            seen.append((m["msg_type"], m["content"].get("text") or data.get("text/plain")))
    assert seen == [("stream", "before\n"), ("display_data", "'one'"), ("stream", "middle\n"),
                    ("update_display_data", "'two'"), ("clear_output", None),
                    ("display_data", "'three'"), ("stream", "after\n")]
    one, two = result.of("display_data")[0], result.of("update_display_data")[0]
    assert one["content"]["transient"]["display_id"] == two["content"]["transient"]["display_id"]


@pytest.mark.parametrize("show", ["plt.show()", "None"])
def test_matplotlib_figure_is_an_image(kernel, show):
    result = kernel.run(f"%%timeout 10 -m fork\nplt.plot([1, 3, 2])\n{show}")
    assert result.status == "ok", result.traceback
    assert len(result.displays("image/png")) == 1


def test_output_arrives_while_the_child_runs(kernel):
    arrived: list[tuple[float, dict]] = []
    result = kernel.run(cell("""
        %%timeout 2 -m fork
        print('early')
        os.write(2, b'raw early\\n')
        time.sleep(0.4)
    """), on_message=lambda m: arrived.append((time.monotonic(), m)))
    assert result.status == "ok", result.traceback
    end = next(t for t, m in arrived
               if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle")
    streams = [(t, m["content"]["text"]) for t, m in arrived if m["msg_type"] == "stream"]
    assert "".join(text for _, text in streams) == "early\nraw early\n"
    last = streams[-1][0]
    assert end - last > 0.25, f"the output arrived only {end - last:.3f}s before the cell ended"


def test_nothing_the_parent_printed_is_duplicated_and_no_warning(kernel):
    result = kernel.run(cell("""
        import warnings; warnings.simplefilter('always')
        from IPython.display import display
        @nbtimeout.timeout(2, mode='fork')
        def child():
            display('first display of the child')
            print('child')
        print('parent', end='')
        sys.stderr.write('parent err')
        child()
        child()
    """))
    assert result.status == "ok", result.traceback
    assert result.stream("stdout").count("parent") == 1
    assert result.stream("stdout").count("child") == 2
    assert result.stream("stderr") == "parent err"  # no DeprecationWarning about fork()
    assert result.displays() == ["'first display of the child'"] * 2
    magic = kernel.run("%%timeout 2 -m fork\nprint('x')")
    assert "Warning" not in magic.stream("stderr")


# --- the namespace -------------------------------------------------------------------------------

def test_value_is_out_n(kernel):
    result = kernel.run("%%timeout 2 -m fork\n6 * 7")
    assert result.status == "ok", result.traceback
    assert result.out == "42"
    count = result.of("execute_result")[0]["content"]["execution_count"]
    assert kernel.value(f"Out[{count}]") == 42


def test_new_rebound_and_deleted_names(kernel):
    kernel.run("rebound = 1; doomed = 2; kept = 3")
    result = kernel.run("%%timeout 2 -m fork\nnew = 'n'\nrebound = 10\ndel doomed")
    assert result.status == "ok", result.traceback
    assert kernel.value("(new, rebound, kept, 'doomed' in globals())") == ("n", 10, 3, False)


def test_in_place_mutation_comes_back(kernel):
    kernel.run("import numpy as np\nL = [1]; D = {}; arr = np.zeros(3)\nclass O: pass\nobj = O(); alias = L")
    result = kernel.run("%%timeout 2 -m fork\nL.append(2)\nD['k'] = 'v'\nobj.attr = 5\narr[1] = 7")
    assert result.status == "ok", result.traceback
    assert kernel.value("(L, D, obj.attr, arr.tolist(), alias is L)") == ([1, 2], {"k": "v"}, 5,
                                                                            [0.0, 7.0, 0.0], True)


def test_cell_defined_function_class_instance_lambda_and_module(kernel):
    result = kernel.run(cell("""
        %%timeout 2 -m fork
        import fractions
        def double(x): return 2 * x
        class Point:
            def __init__(self, x): self.x = x
            def norm(self): return abs(self.x)
        p = Point(-4)
        inc = lambda x: x + 1
    """))
    assert result.status == "ok", result.traceback
    assert kernel.value("(double(3), Point(-2).norm(), p.norm(), isinstance(p, Point), inc(1))") == (
        6, 2, 4, True, 2)
    assert kernel.value("str(fractions.Fraction(1, 3))") == "1/3"


def test_unpicklable_name_is_one_warning_line(kernel):
    result = kernel.run("%%timeout 2 -m fork\nimport threading\nlock = threading.Lock()\nfine = 1")
    assert result.status == "ok", result.traceback
    lines = result.stream("stderr").splitlines()
    assert len(lines) == 1, lines
    assert "lock" in lines[0]
    assert "fine" not in lines[0]
    assert kernel.value("(fine, 'lock' in globals())") == (1, False)


# --- errors --------------------------------------------------------------------------------------

def test_exception_has_type_message_cell_line_and_earlier_names_sync(kernel):
    result = kernel.run("%%timeout 2 -m fork\nbefore_error = 1\nraise ValueError('bad value')\nafter = 2")
    assert (result.status, result.ename, result.evalue) == ("error", "ValueError", "bad value")
    assert re.search(r"Cell In\[\d+\], line 3\n", result.traceback), result.traceback
    assert "----> 3 raise ValueError('bad value')" in result.traceback
    assert "_fork" not in result.traceback
    assert kernel.value("(before_error, 'after' in globals())") == (1, False)


@pytest.mark.parametrize(("body", "line"), [
    ("while True: pass", "----> 3 while True: pass"),
    ("sum(range(10**10))", "----> 3 sum(range(10**10))"),
])
def test_timeout_shows_where_and_leaves_namespace_untouched(kernel, body, line):
    kernel.run("untouched = [1]")
    arrived: list[tuple[float, dict]] = []
    result = kernel.run(f"%%timeout 0.2 -m fork\nuntouched.append(2); created = 1\n{body}",
                        on_message=lambda m: arrived.append((time.monotonic(), m)))
    assert (result.status, result.ename) == ("error", "CellTimeoutError"), result.traceback
    assert result.evalue == "ran past its 200 ms limit (fork engine)"
    assert line in result.traceback
    assert "kernelbase" not in result.traceback
    assert "_fork" not in result.traceback
    assert re.search(r"at line 3 of In \[\d+\]", "".join(result.displays()))
    started = next(t for t, m in arrived if m["msg_type"] == "execute_input")
    ended = next(t for t, m in arrived if m["msg_type"] == "error")
    assert 0.2 <= ended - started < 0.5, f"stopped {ended - started - 0.2:.3f}s past the limit"
    assert kernel.value("(untouched, 'created' in globals())") == ([1], False)


# --- crashes -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "named"), [
    ("import ctypes; ctypes.string_at(0)", "killed by SIGSEGV"),
    ("os.abort()", "killed by SIGABRT"),
    ("os._exit(3)", "exited with code 3"),
])
def test_crash_is_named_at_once_and_kernel_lives(kernel, body, named):
    started = time.monotonic()
    result = kernel.run(f"%%timeout 10 -m fork\n{body}")
    took = time.monotonic() - started
    assert (result.status, result.ename) == ("error", "CellCrashedError")
    assert named in result.evalue
    assert took < 1.0, f"crash reported after {took:.3f}s"
    assert kernel.alive()
    assert kernel.value("1 + 1") == 2


def test_memory_limit_is_a_memory_error_and_small_allocations_work(kernel):
    result = kernel.run("%%timeout 5 -m fork --memory 200MB\nbig = bytearray(10**9)")
    assert (result.status, result.ename) == ("error", "MemoryError"), result.traceback
    assert kernel.alive()
    assert kernel.value("'big' in globals()") is False
    result = kernel.run("%%timeout 5 -m fork --memory 200MB\nsmall = bytearray(10**6)\nlen(small)")
    assert result.status == "ok", result.traceback
    assert result.out == "1000000"


# --- stopping ------------------------------------------------------------------------------------

def test_ignored_sigterm_and_grandchild_are_gone_after_grace(kernel):
    path = pidfile()
    started = time.monotonic()
    result = kernel.run(cell(f"""
        %%timeout 0.2 -m fork -g 0.2
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        p = subprocess.Popen(['sleep', '60'])
        open({path!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')
        while True: pass
    """))
    took = time.monotonic() - started
    assert result.ename == "CellTimeoutError"
    assert took < 0.2 + 0.2 + 0.4, took
    child, grandchild = read_pids(path, 2)
    assert wait_until(lambda: gone(child) and gone(grandchild))


def test_kernel_interrupt_kills_child_and_grandchild_within_a_second(kernel):
    path = pidfile()
    results = []
    runner = threading.Thread(target=lambda: results.append(kernel.run(cell(f"""
        %%timeout 30 -m fork
        p = subprocess.Popen(['sleep', '60'])
        open({path!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')
        time.sleep(30)
    """))))
    runner.start()
    child, grandchild = read_pids(path, 2)
    interrupted = time.monotonic()
    kernel.interrupt()
    runner.join(10)
    took = time.monotonic() - interrupted
    assert results, "the cell did not end"
    assert results[0].ename == "KeyboardInterrupt", results[0].traceback
    assert took < 1.0, f"interrupt took {took:.3f}s"
    assert wait_until(lambda: gone(child) and gone(grandchild), 2)
    assert kernel.value("1 + 1") == 2


def test_sys_exit_is_shown_as_ipython_does_and_leaves_no_second_kernel(kernel):
    plain = kernel.run("sys.exit(3)")
    forked = kernel.run("%%timeout 2 -m fork\nsys.exit(3)")
    assert (forked.status, forked.ename, forked.evalue) == ("error", "SystemExit", "3")
    assert (plain.ename, plain.evalue) == (forked.ename, forked.evalue)
    assert "An exception has occurred, use %tb to see the full traceback." in forked.traceback
    assert no_children(kernel)
    assert kernel.value("1 + 1") == 2


def test_many_fork_timeouts_and_calls_leave_no_zombie_and_no_fd(kernel):
    result = kernel.run(cell("""
        @nbtimeout.timeout(0.02, mode='fork', grace=0.1)
        def spin():
            while True: pass
        @nbtimeout.timeout(5, mode='fork')
        def quick(i):
            return i
        def fds(): return len(os.listdir('/proc/self/fd'))
        try:  # first use opens what stays open (the reaper thread)
            spin()
        except nbtimeout.CellTimeoutError:
            quick(0)
        fds_before = fds()
        stopped = 0
        for _ in range(200):
            try:
                spin()
            except nbtimeout.CellTimeoutError:
                stopped += 1
        total = sum(quick(i) for i in range(200))
    """))
    assert result.status == "ok", result.traceback
    assert kernel.value("(stopped, total)") == (200, sum(range(200)))
    assert no_children(kernel)
    assert wait_until(lambda: kernel.value("fds() - fds_before") <= 0), kernel.value("fds() - fds_before")
    for _ in range(20):
        assert kernel.run("%%timeout 0.05 -m fork\nwhile True: pass").ename == "CellTimeoutError"
        assert kernel.run("%%timeout 5 -m fork\nx = 1").status == "ok"
    assert no_children(kernel)
    assert wait_until(lambda: kernel.value("fds() - fds_before") <= 0), kernel.value("fds() - fds_before")


# --- Python API ----------------------------------------------------------------------------------

def test_api_value_exception_crash_and_timeout(kernel):
    result = kernel.run(cell("""
        import ctypes
        @nbtimeout.timeout(5, mode='fork')
        def work(n): return {'n': n, 'sq': n * n}
        @nbtimeout.timeout(5, mode='fork')
        def fails(): raise KeyError('missing')  # raising-line
        @nbtimeout.timeout(5, mode='fork')
        def crashes(): ctypes.string_at(0)
        @nbtimeout.timeout(0.1, mode='fork')
        def slow():
            while True: pass
        value = work(7)
        errors = {}
        for f in (fails, crashes, slow):
            try:
                f()
            except BaseException as e:
                errors[f.__name__] = e
        fails_ = errors['fails']
        summary = (type(fails_).__name__, str(fails_), type(fails_.remote_traceback).__name__,
                   'raising-line' in str(fails_.remote_traceback),
                   type(errors['crashes']).__name__, errors['crashes'].signal,
                   type(errors['slow']).__name__, isinstance(errors['slow'], TimeoutError),
                   errors['slow'].where)
    """))
    assert result.status == "ok", result.traceback
    assert kernel.value("value") == {"n": 7, "sq": 49}
    summary = kernel.value("summary")
    assert summary[:8] == ("KeyError", "'missing'", "RemoteTraceback", True,
                           "CellCrashedError", "SIGSEGV", "CellTimeoutError", True)
    assert re.fullmatch(r"line 10 in slow\(\) of In \[\d+\]", summary[8]), summary[8]


# --- the kernel dies -----------------------------------------------------------------------------

# shutting down the client of a SIGKILLed kernel leaves jupyter_client sockets to the collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_child_goes_when_the_kernel_dies(fresh_kernel):
    path = pidfile()
    assert fresh_kernel.run("%load_ext nbtimeout").status == "ok"
    fresh_kernel.client.execute(cell(f"""
        %%timeout 60 -m fork
        import os, subprocess, time
        p = subprocess.Popen(['sleep', '60'])
        open({path!r}, 'w').write(f'{{os.getpid()}} {{p.pid}}')
        time.sleep(60)
    """))
    child, grandchild = read_pids(path, 2)
    os.kill(fresh_kernel.pid, signal.SIGKILL)
    killed = time.monotonic()
    # The guard process sees the kernel's end of a pipe close and kills the child's whole group.
    both_gone = wait_until(lambda: gone(child) and gone(grandchild), 1)
    took = time.monotonic() - killed
    for pid in (child, grandchild):
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)  # ours to clean up
    assert both_gone, f"still running {took:.2f}s after the kernel was killed"
