"""``nbtimeout.map`` in-process: outcomes, order, output, replacement, recycling, interrupts."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

import pytest
from procs import children, exited, wait_until

import nbtimeout
from nbtimeout import CellCrashedError, CellTimeoutError
from nbtimeout._errors import CellResultError
from nbtimeout._fork.protocol import ChildError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_worker_left():
    """map() reaps every worker before it returns or raises: no new child may remain."""
    before = children(os.getpid())
    yield
    assert children(os.getpid()) <= before


def task(x):
    """A task that does what its item says."""
    kind, arg = x
    if kind == "sleep":
        time.sleep(arg)
    elif kind == "c-loop":
        sum(range(10**10))  # C code: no Python-level interruption would stop it
    elif kind == "segfault":
        ctypes.string_at(0)
    elif kind == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    elif kind == "raise":
        raise ValueError(f"bad item {arg}")
    elif kind == "exit":
        os._exit(arg)
    elif kind == "pid":
        return os.getpid()
    return arg


def test_values_come_back_in_input_order():
    items = [("sleep", 0.01 * (8 - i)) for i in range(8)]  # the first items finish last
    results = nbtimeout.map(task, items, timeout=2, workers=3)
    assert isinstance(results, list)
    assert [o.status for o in results] == ["finished"] * 8
    assert [o.index for o in results] == list(range(8))
    assert [o.item for o in results] == items
    assert results.values() == [a for _, a in items]
    assert results.unwrap() == results.values()
    assert results.raise_first() is results
    assert results.counts() == {"finished": 8, "stopped": 0, "crashed": 0, "failed": 0}
    assert all(o.ok and o.error is None and 0 < o.elapsed < 1 for o in results)


@pytest.mark.parametrize(("kind", "grace", "ends"), [
    ("sleep", 1.0, 0.3),  # SIGTERM ends it at once: the grace is not waited for
    ("c-loop", 1.0, 0.3),
    ("deaf", 0.2, 0.5),  # it ignores SIGTERM: SIGKILL once its grace is over
])
def test_a_task_past_its_limit_is_stopped_on_time_and_the_rest_finish(kind, grace, ends):
    started = time.monotonic()
    results = nbtimeout.map(task, [(kind, 60), ("ok", 1), ("ok", 2), ("ok", 3)], timeout=0.3, workers=2,
                            grace=grace)
    wall = time.monotonic() - started
    stopped = results[0]
    assert stopped.status == "stopped"
    assert isinstance(stopped.error, CellTimeoutError)
    assert isinstance(stopped.error, TimeoutError)
    assert str(stopped.error) == "ran past its 300 ms limit (fork engine)"
    assert ends <= stopped.elapsed < ends + 0.15
    assert wall < 1.2
    if kind != "deaf":  # SIGTERM made it dump its stack: where it was, even inside a C call
        assert "in task()" in stopped.error.where
        assert ("time.sleep(arg)" if kind == "sleep" else "sum(range(10**10))") in stopped.error.stack
        assert "task" in [f.name for f in traceback.extract_tb(stopped.error.__traceback__)]
    assert results.values() == [1, 2, 3]
    with pytest.raises(CellTimeoutError):
        results.raise_first()
    with pytest.raises(CellTimeoutError):
        stopped.unwrap()


def test_each_limit_counts_from_the_tasks_own_start():
    # One worker: the third task starts at about 0.3 s, after the first two took 0.15 s each.
    # Its limit of 0.25 s is not used up by the time it waited.
    results = nbtimeout.map(task, [("sleep", 0.15), ("sleep", 0.15), ("sleep", 0.15)], timeout=0.25,
                            workers=1)
    assert [o.status for o in results] == ["finished"] * 3


def test_a_segfault_is_a_crash_of_that_task_only(capfd):
    results = nbtimeout.map(task, [("segfault", 0), ("ok", 1), ("ok", 2)], timeout=5, workers=1)
    crashed = results[0]
    assert crashed.status == "crashed"
    assert isinstance(crashed.error, CellCrashedError)
    assert crashed.error.signal == "SIGSEGV"
    assert results.values() == [1, 2]
    # where it crashed, read off the stack the worker dumped as it died; nothing of it on stderr
    assert "in string_at()" in crashed.error.where or "in task()" in crashed.error.where
    assert "task" in [f.name for f in traceback.extract_tb(crashed.error.__traceback__)]
    assert "Fatal Python error" not in capfd.readouterr().err


def test_a_killed_worker_is_replaced():
    # One worker: everything after the dying task needs a replacement worker.
    results = nbtimeout.map(task, [("exit", 3), ("pid", 0), ("sleep", 9), ("pid", 0)], timeout=0.2,
                            workers=1)
    assert [o.status for o in results] == ["crashed", "finished", "stopped", "finished"]
    assert results[0].error.exitcode == 3
    assert results[0].error.signal is None
    assert results[1].value != results[3].value  # the stopped task's worker was replaced too
    assert {results[1].value, results[3].value}.isdisjoint(children(os.getpid()))


def test_max_tasks_per_worker_recycles_workers():
    results = nbtimeout.map(task, [("pid", 0)] * 6, timeout=5, workers=1, max_tasks_per_worker=2)
    pids = results.values()
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3
    # without recycling one worker does everything
    assert len(set(nbtimeout.map(task, [("pid", 0)] * 6, timeout=5, workers=1).values())) == 1


def test_an_exception_is_a_failed_outcome_with_the_workers_traceback():
    results = nbtimeout.map(task, [("ok", 1), ("raise", 7)], timeout=5, workers=2)
    failed = results[1]
    assert failed.status == "failed"
    assert isinstance(failed.error, ValueError)
    assert str(failed.error) == "bad item 7"
    assert 'raise ValueError(f"bad item {arg}")' in str(failed.error.remote_traceback)
    with pytest.raises(ValueError, match="bad item 7"):
        results.unwrap()
    assert results.values() == [1]
    assert results.errors() == [failed]
    assert "failed" in repr(failed)
    assert "ValueError" in repr(failed)


def cleanup_on_sigterm(_):
    def bye(signum, frame):
        print("cleaning up", flush=True)
        os._exit(1)

    signal.signal(signal.SIGTERM, bye)
    time.sleep(60)


def test_a_stopped_task_gets_sigterm_first_and_may_clean_up(capfd):
    results = nbtimeout.map(cleanup_on_sigterm, [0], timeout=0.3, workers=1, grace=2)
    assert results[0].status == "stopped"  # not "crashed": it ended because it was told to
    assert results[0].elapsed < 1
    assert "[0] cleaning up\n" in capfd.readouterr().out


def allocate(megabytes):
    return len(bytearray(megabytes << 20))


def test_memory_limits_each_task_not_the_worker():
    results = nbtimeout.map(allocate, [400, 1, 400, 100], timeout=10, workers=1, memory="200MB")
    assert [o.status for o in results] == ["failed", "finished", "failed", "finished"]
    assert isinstance(results[0].error, MemoryError)
    assert results.values() == [1 << 20, 100 << 20]


def printer(i):
    print(f"line one of {i}")
    sys.stderr.write(f"err {i}\n")
    os.write(1, f"raw fd write {i}\n".encode())  # as C code or a subprocess would
    print("no newline", end="")
    if i == 1:
        time.sleep(60)
    return i


def test_output_reaches_the_caller_prefixed_with_the_task_index(capfd):
    results = nbtimeout.map(printer, range(3), timeout=0.5, workers=3)
    assert [o.status for o in results] == ["finished", "stopped", "finished"]
    out, err = capfd.readouterr()
    for i in range(3):  # the stopped task's output is kept too
        assert f"[{i}] line one of {i}\n" in out
        assert f"[{i}] no newline\n" in out  # an unfinished line ends with its task
        assert f"[{i}] raw fd write {i}\n" in out
        assert f"[{i}] err {i}\n" in err
    assert "DeprecationWarning" not in err


def spawner(_):
    child = subprocess.Popen(["sleep", "60"])
    print(f"grandchild {child.pid}", flush=True)
    time.sleep(60)


def test_what_a_stopped_task_started_is_killed_with_it(capfd):
    results = nbtimeout.map(spawner, [0], timeout=0.5, workers=1)
    assert results[0].status == "stopped"
    out = capfd.readouterr().out
    pid = int(out.split("grandchild ")[1].split()[0])
    assert wait_until(lambda: exited(pid))


def test_keyboard_interrupt_stops_everything():
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            nbtimeout.map(task, [("sleep", 60)] * 4, timeout=30, workers=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 2  # the fixture checks no worker is left


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout": "abc"}, "timeout 'abc' is not"),
    ({"timeout": -1}, "must be finite and greater than zero"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"max_tasks_per_worker": 1.5}, "max_tasks_per_worker must be a positive integer"),
    ({"grace": -1}, "grace '-1' must be finite"),
    ({"memory": "lots"}, "memory 'lots' is not"),
])
def test_bad_arguments_are_refused_before_anything_runs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nbtimeout.map(task, [("ok", 1)], **kwargs)


def test_no_items_no_workers():
    assert nbtimeout.map(task, [], timeout=1) == []
    assert "map" in nbtimeout.__all__


class TwoArgsError(Exception):
    """Pickles, but does not unpickle: ``args`` holds one of its two arguments."""

    def __init__(self, a, b):
        super().__init__(a)


class BadReduce:
    def __reduce__(self):
        raise RuntimeError("no pickling today")


class BadUnpickle:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("no unpickling here")


class LockedError(Exception):
    """Cannot travel in any form: it holds a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def carried(kind):
    if kind == "lock":
        return threading.Lock()
    if kind == "reduce":
        return BadReduce()
    if kind == "unpickle":
        return BadUnpickle()
    if kind == "two-args":
        raise TwoArgsError("one", "two")
    if kind == "locked":
        raise LockedError("mine")
    return kind


@pytest.mark.parametrize("workers", [1, 3])
def test_what_cannot_be_carried_back_loses_only_its_own_task(workers):
    kinds = ["a", "lock", "reduce", "unpickle", "two-args", "locked", "b"]
    results = nbtimeout.map(carried, kinds, timeout=5, workers=workers)
    assert [o.status for o in results] == ["finished", "failed", "failed", "failed", "failed", "failed",
                                           "finished"]
    assert results.values() == ["a", "b"]
    errors = {kind: o.error for kind, o in zip(kinds, results, strict=True) if not o.ok}
    # a value: CellResultError (a TypeError) naming it, never a stand-in marked finished
    for kind in ("lock", "reduce", "unpickle"):
        assert isinstance(errors[kind], CellResultError)
        assert isinstance(errors[kind], TypeError)
    said = {kind: str(e) for kind, e in errors.items()}
    assert said["lock"] == ("the value fn returned, a _thread.lock, could not be pickled to send it back: "
                            "TypeError: cannot pickle '_thread.lock' object")
    assert said["reduce"] == ("the value fn returned, a test_map.BadReduce, could not be pickled to send it "
                              "back: RuntimeError: no pickling today")
    assert said["unpickle"] == ("the value fn returned could not be unpickled here: "
                                "RuntimeError: no unpickling here")
    # an exception comes back as in fork mode: itself if it can be rebuilt (TwoArgsError's __init__ is
    # not called again), else a stand-in of the same name and message whose note says why
    assert type(errors["two-args"]).__name__ == "TwoArgsError"
    assert said["two-args"] == "one"
    assert "raise TwoArgsError" in str(errors["two-args"].remote_traceback)  # the task's traceback is kept
    locked = errors["locked"]
    assert isinstance(locked, ChildError)
    assert type(locked).__name__ == "LockedError"
    assert said["locked"] == "mine"
    assert "test_map.LockedError could not be carried back" in locked.__notes__[-1]
    assert "lock" in locked.__notes__[-1]
