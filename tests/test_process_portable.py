"""The process layer on its fast paths and on the fallbacks macOS has (issue 13).

CI runs this file, with the fork and map suites, once as it is and once with NBTIMEOUT_PORTABLE=1,
which makes nbtimeout use only what macOS offers (no pidfd, prctl or /proc). The kernels the tests
start inherit that environment. Here: the choice is made once and reaches the kernel; exits are
seen without polling and reaped without leaks; a child's own Python forks do not hide its end; the
guard process takes everything down with a SIGKILLed kernel, even a child stuck in C; and
``--memory`` is a limit or a watch, and says which.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import psutil
import pytest
from kernelclient import Kernel
from procs import children, exited, wait_until

pytestmark = pytest.mark.timeout(120)
PORTABLE = os.environ.get("NBTIMEOUT_PORTABLE", "").strip() not in ("", "0")


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def facilities(env: dict[str, str]) -> dict[str, bool]:
    code = ("import os, json\nfrom nbtimeout._process import facilities\n"
            "os.environ['NBTIMEOUT_PORTABLE'] = 'flipped later'\n"  # read once, at import: no effect
            "print(json.dumps(facilities.describe()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_portable_mode_is_read_once_from_the_environment_and_turns_off_every_linux_facility():
    env = {k: v for k, v in os.environ.items() if k != "NBTIMEOUT_PORTABLE"}
    assert facilities({**env, "NBTIMEOUT_PORTABLE": "1"}) == {
        "portable": True, "pidfd": False, "prctl": False, "proc_status": False}
    native = facilities({**env, "NBTIMEOUT_PORTABLE": "0"})
    assert native["portable"] is False
    # On this Linux every fast path is there; each is chosen by capability, not by platform name.
    assert native == {"portable": False, "pidfd": hasattr(os, "pidfd_open"), "prctl": True,
                      "proc_status": os.path.exists("/proc/self/status")}


def test_a_child_forked_on_a_thread_that_ends_lives_until_it_is_done():
    """PR_SET_PDEATHSIG fires when the forking *thread* ends: map's executor forks long-lived servers
    from worker threads, which would die with them."""
    from nbtimeout._process.forking import detach, exit_fd, exited, fork, reap

    def child():  # pragma: no cover - runs in the child
        detach(parent)
        time.sleep(0.3)
        os._exit(7)

    parent, pids = os.getpid(), []
    thread = threading.Thread(target=lambda: pids.append(fork(child)))
    thread.start()
    thread.join()
    fd = exit_fd(pids[0])
    try:
        assert exited(fd, 10)
    finally:
        os.close(fd)
    assert reap(pids[0]) == (None, 7)


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import os, sys, time, signal, subprocess, nbtimeout").status == "ok"


def test_the_kernel_inherits_the_choice(kernel):
    got = kernel.value("nbtimeout._process.facilities.describe()")
    assert got["portable"] is PORTABLE
    assert got["pidfd"] is (not PORTABLE and hasattr(os, "pidfd_open"))


def _fds(pid: int) -> dict[str, str]:
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
    return found


MIXED = cell("""
    for _ in range({n}):
        get_ipython().run_cell("%%timeout 5 -m fork -q\\nx = 1")
        get_ipython().run_cell("%%timeout 0.05 -m fork -q -c\\ntime.sleep(5)")
        get_ipython().run_cell("%%timeout 5 -m fork -q -c\\nimport ctypes; ctypes.string_at(0)")
        get_ipython().run_cell("%%timeout 5 -m fork -q -c\\nraise KeyError(1)")
        get_ipython().run_cell("%%timeout 5 -m fork -q -c\\nos._exit(9)")
        nbtimeout.map(lambda k: k or time.sleep(5), [0, 1, 2], timeout=0.05, workers=2)
""")


def test_many_cells_of_every_kind_leave_no_zombie_and_no_descriptor(kernel):
    assert kernel.run(MIXED.format(n=2)).status == "ok"  # warm: the guard, imports, lazy threads
    assert wait_until(lambda: not children(kernel.pid))
    before = _fds(kernel.pid)
    assert kernel.run(MIXED.format(n=15), timeout=120).status == "ok"  # 120 forks
    assert wait_until(lambda: not children(kernel.pid)), children(kernel.pid)
    # A leak in the fork path grows with every fork; the kernel's own lazily opened descriptors
    # (a thread's eventfd, a socket) may add one or two once.
    wait_until(lambda: len(_fds(kernel.pid)) <= len(before), 5)
    after = _fds(kernel.pid)
    assert len(after) - len(before) <= 2, {fd: after[fd] for fd in after.keys() - before.keys()}


def test_a_child_whose_own_fork_lives_on_is_still_seen_to_end_at_once(kernel):
    """The user's os.fork() in a fork cell copies everything: the status pipe must not stay open in it."""
    fd, path = tempfile.mkstemp(prefix="nbtimeout-", dir="/tmp")
    os.close(fd)
    started = time.monotonic()
    result = kernel.run(cell(f"""
        %%timeout 30 -m fork
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        open({path!r}, 'w').write(str(pid))
        os._exit(6)
    """))
    took = time.monotonic() - started
    assert "exited with code 6" in (result.evalue or ""), result.traceback
    assert took < 1.0, took
    with open(path) as f:
        grandchild = int(f.read())
    os.unlink(path)
    assert wait_until(lambda: exited(grandchild), 1)  # killed with the child's group


def test_a_segfault_is_named_in_under_a_second(kernel):
    started = time.monotonic()
    result = kernel.run("%%timeout 30 -m fork\nimport ctypes; ctypes.string_at(0)")
    assert "killed by SIGSEGV" in result.evalue
    assert time.monotonic() - started < 1.0


def _guard(kernel: Kernel) -> list[psutil.Process]:
    sid = kernel.value("__import__('nbtimeout._process.guard', fromlist=['_']).session()")
    assert sid is not None, "no guard started"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if os.getsid(proc.pid) == sid and any("guardian.py" in a for a in proc.info["cmdline"] or []):
                found.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def test_one_guard_per_kernel_and_it_is_nobodys_child(kernel):
    for _ in range(3):
        assert kernel.run("%%timeout 5 -m fork\n1").status == "ok"
    guards = _guard(kernel)
    assert len(guards) == 1
    assert guards[0].pid not in children(kernel.pid)
    assert guards[0].ppid() != kernel.pid


def _guards_of(pid: int) -> list[int]:
    """Guard processes of the process ``pid``: they hold the other end of one of its pipes."""
    pipes = {target for target in _fds(pid).values() if target.startswith("pipe:")}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any("guardian.py" in a for a in proc.info["cmdline"] or []):
            with contextlib.suppress(OSError):
                if pipes & set(_fds(proc.pid).values()):
                    found.append(proc.pid)
    return found


def test_forks_from_many_threads_at_once_start_one_guard(fresh_kernel):
    result = fresh_kernel.run(cell("""
        from concurrent.futures import ThreadPoolExecutor
        import nbtimeout
        @nbtimeout.timeout(5, mode="fork")
        def same(x):
            return x
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(same, range(16)))
        got == list(range(16))
    """))
    assert result.out == "True", result.traceback
    assert len(_guards_of(fresh_kernel.pid)) == 1


# shutting down the client of a SIGKILLed kernel leaves jupyter_client sockets to the collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("stuck", ["c-loop-holding-the-gil", "map-workers"])
def test_a_killed_kernel_takes_every_child_and_what_it_started_within_a_second(fresh_kernel, stuck):
    fd, path = tempfile.mkstemp(prefix="nbtimeout-", dir="/tmp")
    os.close(fd)
    body = {
        # sum() over a range runs in C and never lets another thread of the child run
        "c-loop-holding-the-gil": "note(os.getpid())\nsum(range(10**13))",
        "map-workers": "nbtimeout.map(lambda i: note(os.getpid()) or time.sleep(60), range(2), timeout=60, workers=2)",
    }[stuck]
    setup = cell(f"""
        %load_ext nbtimeout
        import os, subprocess, time, nbtimeout
        def note(pid):
            p = subprocess.Popen(['sleep', '60'])
            with open({path!r}, 'a') as f:
                f.write(f'{{pid}} {{p.pid}}\\n')
    """)
    assert fresh_kernel.run(setup).status == "ok"
    assert fresh_kernel.run("%%timeout 5 -m fork\n1").status == "ok"  # starts the guard
    guard = _guard(fresh_kernel)
    fresh_kernel.client.execute(f"%%timeout 60 -m fork\n{body}")
    count = 2 if stuck == "map-workers" else 1
    assert wait_until(lambda: len(_read(path)) >= 2 * count, 20)
    pids = _read(path)
    os.unlink(path)
    os.kill(fresh_kernel.pid, signal.SIGKILL)
    gone = wait_until(lambda: all(exited(p) for p in pids), 1)
    left = [p for p in pids if not exited(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # ours to clean up
    assert gone, f"still running a second after the kernel was killed: {left}"
    assert wait_until(lambda: not any(g.is_running() and g.status() != psutil.STATUS_ZOMBIE for g in guard), 2)


def _read(path: str) -> list[int]:
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def test_memory_is_a_limit_or_a_watch_and_says_which(kernel):
    enforced = kernel.value("__import__('nbtimeout._process.memory', fromlist=['_']).enforced()")
    assert enforced is (not PORTABLE)
    # all at once (one C call holding the GIL), and bit by bit (a loop the watch can interrupt)
    for body in ("big = bytearray(10**9)", "parts = [bytearray(10**7) for _ in range(100)]"):
        result = kernel.run(f"%%timeout 10 -m fork --memory 200MB\n{body}")
        assert (result.status, result.ename) == ("error", "MemoryError"), result.traceback
        notice = [line for line in result.stream("stderr").splitlines() if "--memory" in line]
        if enforced:
            assert notice == []
        else:
            assert len(notice) == 1, notice
            assert "watched here, not enforced" in notice[0]
    result = kernel.run("%%timeout 10 -m fork --memory 200MB\nsmall = bytearray(10**7)\nlen(small)")
    assert (result.status, result.out) == ("ok", "10000000"), result.traceback
