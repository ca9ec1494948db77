"""``nbtimeout.map(executor=client)`` on a real ``distributed.LocalCluster`` of two worker processes.

One cluster for the module (starting one takes seconds). Each task runs in a fork child on its
worker: a C loop is stopped and a segfault is a crash of that task, while the worker processes stay
the same ones (same addresses, same pids, no restart) and keep no child behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

import cloudpickle
import pytest
from procs import exited, left_on, wait_until

import nbtimeout
from nbtimeout import CellCrashedError, CellTimeoutError
from nbtimeout._errors import CellResultError
from nbtimeout._fork.protocol import ChildError

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(120)


# The workers cannot import this test module: ship its functions by value, as for a notebook's.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def workers(client) -> dict[str, int]:
    """Worker address -> pid of the process behind it."""
    return client.run(os.getpid)


@pytest.fixture(autouse=True)
def _workers_unharmed(client):
    """After each test: the same worker processes, and none of them has a child left."""
    before = workers(client)
    yield
    assert workers(client) == before  # no KilledWorker, no restart
    assert wait_until(lambda: not left_on(before.values())), left_on(before.values())


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
    elif kind == "pid":
        return os.getpid(), os.getppid()
    return arg


def test_every_outcome_in_one_call_and_the_workers_live_on(client):
    items = [("ok", 1), ("sleep", 60), ("c-loop", 0), ("segfault", 0), ("raise", 7), ("ok", 2)]
    started = time.monotonic()
    results = nbtimeout.map(task, items, timeout=1, executor=client)
    assert time.monotonic() - started < 10
    assert [o.status for o in results] == ["finished", "stopped", "stopped", "crashed", "failed", "finished"]
    assert [o.index for o in results] == list(range(6))
    assert [o.item for o in results] == items
    assert results.values() == [1, 2]
    for stopped in results[1:3]:
        assert isinstance(stopped.error, CellTimeoutError)
        assert str(stopped.error) == "ran past its 1 s limit (fork engine)"
        assert 1 <= stopped.elapsed < 3
    assert "in task" in results[2].error.where  # where the C loop was, read from its stack dump
    assert "sum(range(10**10))" in results[2].error.stack
    assert isinstance(results[3].error, CellCrashedError)
    assert results[3].error.signal == "SIGSEGV"
    assert "in string_at()" in results[3].error.where  # read from the server's dump as it crashed
    assert str(results[3].error).endswith("; the worker is unharmed")
    assert isinstance(results[4].error, ValueError)
    assert str(results[4].error) == "bad item 7"
    assert 'raise ValueError(f"bad item {arg}")' in str(results[4].error.remote_traceback)


def test_tasks_run_in_servers_forked_from_the_workers_and_reused(client):
    pids = workers(client).values()
    results = nbtimeout.map(task, [("pid", 0)] * 8, timeout=5, executor=client)
    for pid, parent in results.values():
        assert parent in pids  # a child of a worker ...
        assert pid not in pids  # ... never the worker itself
    assert len({pid for pid, _ in results.values()}) <= 2  # one server per worker thread, not one per task
    # the fixture checks that they are closed once idle


def test_output_comes_back_prefixed_with_the_task_index(client, capsys):
    results = nbtimeout.map(task, [("ok", 1), ("sleep", 60)], timeout=0.5, executor=client)
    assert [o.status for o in results] == ["finished", "stopped"]
    out = capsys.readouterr().out
    assert "[0] start ok\n" in out
    assert "[1] start sleep\n" in out  # a stopped task's output is kept


class TwoArgsError(Exception):
    def __init__(self, a, b):
        super().__init__(a)


class LockedError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def carried(kind):
    if kind == "lock":
        return threading.Lock()
    if kind == "two-args":
        raise TwoArgsError("one", "two")
    if kind == "locked":
        raise LockedError("mine")
    return kind


def test_what_cannot_be_carried_loses_only_its_task(client):
    results = nbtimeout.map(carried, ["a", "lock", "two-args", "locked", "b"], timeout=5, executor=client)
    assert [o.status for o in results] == ["finished", "failed", "failed", "failed", "finished"]
    assert results.values() == ["a", "b"]
    assert isinstance(results[1].error, CellResultError)
    assert str(results[1].error) == ("the value fn returned, a _thread.lock, could not be pickled to send it "
                                     "back: TypeError: cannot pickle '_thread.lock' object")
    assert type(results[2].error).__name__ == "TwoArgsError"
    assert str(results[2].error) == "one"
    locked = results[3].error
    assert isinstance(locked, ChildError)  # fork mode's stand-in: same name and message, says why
    assert type(locked).__name__ == "LockedError"
    assert str(locked) == "mine"
    assert "LockedError could not be carried back" in locked.__notes__[-1]


def test_a_function_that_holds_data_is_sent_as_data(client):
    table = list(range(200_000))  # a closure over data: about 1 MB pickled

    def lookup(i):
        return table[i]

    results = nbtimeout.map(lookup, [0, 5, 199_999], timeout=10, executor=client)
    assert results.values() == [0, 5, 199_999]


def test_a_memory_limit_per_task(client):
    def allocate(megabytes):
        return len(bytearray(megabytes << 20))

    results = nbtimeout.map(allocate, [1, 400], timeout=10, memory="200MB", executor=client)
    assert results[0].value == 1 << 20
    assert results[1].status == "failed"
    assert isinstance(results[1].error, MemoryError)


def test_the_grid_names_the_dask_workers(client, capsys, monkeypatch):
    from nbtimeout._map import view

    seen = []
    monkeypatch.setattr(view.View, "draw", lambda self, final: seen.append(self.summary()) if final else None)
    nbtimeout.map(task, [("ok", 1)], timeout=5, executor=client)
    assert seen[-1].startswith("nbtimeout.map: 1/1 tasks done in ")
    assert "on 2 Dask worker threads, 5 s limit each: 1 finished" in seen[-1]


def test_keyboard_interrupt_cancels_the_pending_and_kills_the_running(client):
    before = workers(client)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        with pytest.raises(KeyboardInterrupt):
            nbtimeout.map(task, [("sleep", 60)] * 6, timeout=30, executor=client)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 5
    # The running tasks' children were killed at once, long before their 30 s limit.
    assert wait_until(lambda: not left_on(before.values()), 5)
    # and the workers are free for the next call
    assert nbtimeout.map(task, [("ok", 3)], timeout=5, executor=client).values() == [3]


def spawner(_):
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    print(f"grandchild {child.pid}", flush=True)
    time.sleep(60)


def test_what_a_stopped_task_started_is_killed_with_it(client, capsys):
    results = nbtimeout.map(spawner, [0], timeout=0.5, executor=client)
    assert results[0].status == "stopped"
    pid = int(capsys.readouterr().out.split("grandchild ")[1].split()[0])
    assert wait_until(lambda: exited(pid))


def test_bad_arguments_are_refused_before_anything_runs(client):
    with pytest.raises(ValueError, match="workers applies to nbtimeout's own workers"):
        nbtimeout.map(task, [("ok", 1)], workers=2, executor=client)
    with pytest.raises(TypeError, match=r"executor must be a distributed\.Client"):
        nbtimeout.map(task, [("ok", 1)], executor="localhost:8786")
