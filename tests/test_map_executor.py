"""``nbtimeout.map(executor=...)`` with a ``concurrent.futures.ProcessPoolExecutor`` (spawned workers).

The workers are spawned, so they hold nothing of this module: ``fn`` travels by value, as a
notebook's function does. Each task runs in a fork child of the worker process that picks it up.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import cloudpickle
import psutil
import pytest
from procs import left_on, wait_until

import nbtimeout
from nbtimeout import CellCrashedError, CellTimeoutError
from nbtimeout._errors import CellResultError

pytestmark = pytest.mark.timeout(120)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def executor():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, [1, 2]))  # both workers started
        yield pool


def worker_pids(executor) -> set[int]:
    return set(executor._processes)  # the pool's own record of its worker processes


@pytest.fixture(autouse=True)
def _workers_unharmed(executor):
    before = worker_pids(executor)
    yield
    assert worker_pids(executor) == before  # none died, none was replaced
    assert wait_until(lambda: not left_on(before)), [(p.pid, p.cmdline()) for p in left_on(before)]


def task(x):
    kind, arg = x
    print(f"start {kind}")
    if kind == "sleep":
        time.sleep(arg)
    elif kind == "c-loop":
        sum(range(10**10))
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "raise":
        raise ValueError(f"bad item {arg}")
    elif kind == "parent":
        return os.getppid()
    elif kind == "touch":
        open(arg, "w").close()
        time.sleep(60)
    elif kind == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if arg:
            time.sleep(arg)
    elif kind == "exit":
        os._exit(arg)
    elif kind == "pid":
        return os.getpid()
    elif kind == "bomb":  # returns, and leaves a thread that ends its process a little later
        import threading

        threading.Timer(0.2, os._exit, (9,)).start()
        return os.getpid()
    return arg


def test_every_outcome_in_one_call_on_a_process_pool(executor, capsys):
    items = [("ok", 1), ("sleep", 60), ("c-loop", 0), ("segfault", 0), ("raise", 7), ("parent", 0)]
    results = nbtimeout.map(task, items, timeout=0.5, executor=executor)
    assert [o.status for o in results] == ["finished", "stopped", "stopped", "crashed", "failed", "finished"]
    assert isinstance(results[1].error, CellTimeoutError)
    assert isinstance(results[2].error, CellTimeoutError)
    assert 0.5 <= results[2].elapsed < 2
    assert isinstance(results[3].error, CellCrashedError)
    assert results[3].error.signal == "SIGSEGV"
    assert str(results[4].error) == "bad item 7"
    assert results[5].value in worker_pids(executor)  # the task's parent is a pool worker
    out = capsys.readouterr().out
    for i, (kind, _) in enumerate(items):
        assert f"[{i}] start {kind}\n" in out


def test_a_function_defined_on_the_spot_travels_by_value(executor):
    offset = 10

    class Point:  # a class the workers cannot import
        def __init__(self, x):
            self.x = x + offset

    results = nbtimeout.map(lambda n: Point(n), [1, 2], timeout=5, executor=executor)
    assert [p.x for p in results.values()] == [11, 12]


def test_an_item_that_cannot_be_sent_fails_alone(executor):
    import threading

    results = nbtimeout.map(task, [("ok", 1), threading.Lock(), ("ok", 2)], timeout=5, executor=executor)
    assert [o.status for o in results] == ["finished", "failed", "finished"]
    assert isinstance(results[1].error, CellResultError)
    assert str(results[1].error).startswith("item 1 could not be pickled to send it to the executor: ")


def test_fn_that_cannot_be_sent_is_refused_before_anything_runs(executor):
    import threading

    lock = threading.Lock()
    with pytest.raises(CellResultError, match="fn could not be pickled to send it to the executor"):
        nbtimeout.map(lambda x: lock, [1], timeout=5, executor=executor)


def test_keyboard_interrupt_cancels_what_is_pending_and_kills_what_runs(executor, tmp_path):
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    items = [("touch", str(tmp_path / str(i))) for i in range(8)]
    old = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.8)
        with pytest.raises(KeyboardInterrupt):
            nbtimeout.map(task, items, timeout=30, executor=executor)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 1.5  # raised at once, not after the tasks
    # A pool cannot stop a task it runs: the workers, on this machine, noted their servers for the
    # caller to kill, long before the 30 s limit. What the pool had queued dies as it starts.
    assert wait_until(lambda: not left_on(worker_pids(executor)), 5)
    assert len(os.listdir(tmp_path)) < len(items)
    assert nbtimeout.map(task, [("ok", 3)], timeout=5, executor=executor).values() == [3]


class Submits:
    """Not an Executor: just something whose submit() returns futures."""

    def __init__(self, pool):
        self.pool = pool

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)


def test_anything_with_submit_will_do(executor, monkeypatch):
    from nbtimeout._map import view

    seen = []
    monkeypatch.setattr(view.View, "draw", lambda self, final: seen.append(self.summary()) if final else None)
    results = nbtimeout.map(task, [("ok", 1), ("sleep", 9)], timeout=0.3, executor=Submits(executor))
    assert [o.status for o in results] == ["finished", "stopped"]
    assert "on a Submits, 300 ms limit each: 1 finished, 1 stopped" in seen[-1]
    nbtimeout.map(task, [("ok", 1)], timeout=1, executor=executor)
    assert "on 2 workers, 1 s limit each: 1 finished" in seen[-1]


def test_not_an_executor_is_refused():
    with pytest.raises(TypeError, match=r"executor must be a distributed\.Client or a concurrent\.futures\.Executor"):
        nbtimeout.map(task, [("ok", 1)], executor=object())
    with pytest.raises(ValueError, match="max_tasks_per_worker applies to nbtimeout's own workers"):
        nbtimeout.map(task, [("ok", 1)], max_tasks_per_worker=1, executor=object())


def test_a_task_that_ignores_sigterm_is_killed_after_its_grace(executor):
    results = nbtimeout.map(task, [("deaf", 60), ("sleep", 60)], timeout=0.3, grace=0.4, executor=executor)
    assert [o.status for o in results] == ["stopped", "stopped"]
    assert results[0].elapsed >= 0.7  # its limit, then its grace
    assert results[1].elapsed < 0.7  # SIGTERM ended it: the grace is not waited for


def test_a_task_that_exits_crashes_alone_and_the_next_gets_a_new_server(executor):
    results = nbtimeout.map(task, [("pid", 0), ("exit", 3), ("pid", 0), ("pid", 0)], timeout=5, executor=executor)
    assert [o.status for o in results] == ["finished", "crashed", "finished", "finished"]
    assert results[1].error.exitcode == 3
    assert "exited with code 3" in str(results[1].error)
    assert not set(results.values()) & worker_pids(executor)  # every task ran in a server, never the worker


def test_a_server_that_died_while_idle_is_not_given_a_task():
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as one:
        [server] = nbtimeout.map(task, [("bomb", 0)], timeout=5, executor=one).values()
        assert wait_until(lambda: psutil.Process(server).status() == psutil.STATUS_ZOMBIE)
        results = nbtimeout.map(task, [("pid", 0)], timeout=5, executor=one)
        assert results[0].status == "finished"  # on a new server, not "crashed" on the dead one
        assert results[0].value != server
