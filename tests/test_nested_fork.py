"""Nested fork levels (issue 17.1): stopping a level stops everything below it, at any depth, and an
inner limit stops only its own subtree. Three levels deep through a real kernel, a subprocess at the
bottom: a fork cell, then a ``@timeout(mode="fork")`` call, an ``nbtimeout.map`` task or a nested
fork cell, then one of the others."""

from __future__ import annotations

import os
import tempfile
import textwrap
import time

import pytest
from kernelclient import Kernel
from procs import children, exited, wait_until

pytestmark = pytest.mark.timeout(120)

# Every level appends "<role> <pid>" to PATH; the bottom also starts `sleep 101` and records it.
LEVELS = '''
import os, subprocess, time, nbtimeout

def note(role, pid=None):
    with open(PATH, "a") as f:
        f.write(f"{role} {pid or os.getpid()}\\n")

def bottom(_=None):
    note("bottom")
    note("sleep", subprocess.Popen(["sleep", "101"]).pid)
    print("bottom up", flush=True)
    time.sleep(60)

def call_then_map(limit, task_limit=60):
    @nbtimeout.timeout(limit, mode="fork")
    def middle():
        note("middle")
        return nbtimeout.map(bottom, [0, 1], timeout=task_limit, workers=2)
    return middle()

@nbtimeout.timeout(60, mode="fork")
def forked_bottom():
    bottom()

def cell_then_call(limit):
    ran = get_ipython().run_cell(f"%%timeout {limit} -m fork\\nnote('middle')\\nforked_bottom()")
    if ran.error_in_exec is not None:
        raise ran.error_in_exec

def map_then_call(limit, task_limit=60):
    def task(_):
        note("middle")
        return forked_bottom()
    return nbtimeout.map(task, [0], timeout=limit, workers=1)
'''


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module")
def nest(kernel: Kernel):
    assert kernel.run(LEVELS).status == "ok"
    return kernel


@pytest.fixture
def path(nest: Kernel):
    fd, name = tempfile.mkstemp(prefix="nbtimeout-nest-", dir="/tmp")
    os.close(fd)
    assert nest.run(f"PATH = {name!r}").status == "ok"
    yield name
    for _role, pid in _noted(name):  # a failed test must not leave sleeps behind
        if not exited(pid):
            os.kill(pid, 9)
    os.unlink(name)
    assert wait_until(lambda: not children(nest.pid)), children(nest.pid)


def _noted(path: str) -> list[tuple[str, int]]:
    with open(path) as f:
        return [(role, int(pid)) for role, pid in (line.split() for line in f if line.strip())]


def _wait_for(path: str, role: str, count: int) -> list[int]:
    assert wait_until(lambda: sum(r == role for r, _ in _noted(path)) >= count, 20), _noted(path)
    return [pid for r, pid in _noted(path) if r == role]


def _all_gone_within(pids: list[int], seconds: float) -> bool:
    return wait_until(lambda: all(exited(pid) for pid in pids), seconds)


@pytest.mark.parametrize("shape", ["call_then_map", "map_then_call", "cell_then_call"])
def test_stopping_the_fork_cell_stops_three_levels_below_it(nest, path, shape):
    sleeps = 2 if shape == "call_then_map" else 1
    result = nest.run(cell(f"""
        %%timeout 2 -m fork -g 0
        note("cell")
        {shape}(60)
    """))
    stopped = time.monotonic()
    assert result.ename == "CellTimeoutError", result.traceback
    pids = [pid for _, pid in _noted(path)]
    assert len(_wait_for(path, "sleep", sleeps)) == sleeps, "the bottom level never started"
    assert _all_gone_within(pids, 1.0), [(r, p) for r, p in _noted(path) if not exited(p)]
    assert time.monotonic() - stopped < 1.5


@pytest.mark.parametrize("shape", ["call_then_map", "map_then_call", "cell_then_call"])
def test_an_inner_limit_stops_only_its_own_subtree(nest, path, shape):
    result = nest.run(cell(f"""
        %%timeout 30 -m fork
        note("cell")
        try:
            outcome = {shape}(1.5)
        except TimeoutError as err:
            outcome = type(err).__name__
        else:
            outcome = [o.status for o in outcome]
        print("middle:", outcome)
        below = [int(p) for r, p in (l.split() for l in open(PATH)) if r != "cell"]
        def gone(pid):
            try:
                return open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        deadline = time.monotonic() + 1
        while not all(map(gone, below)) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("subtree gone:", all(map(gone, below)), "cell still here:", os.getpid())
    """))
    assert result.status == "ok", result.traceback
    out = result.stream()
    expected = "['stopped']" if shape == "map_then_call" else "CellTimeoutError"
    assert f"middle: {expected}" in out, out
    assert "subtree gone: True" in out, (out, _noted(path))
    cell_pid = _wait_for(path, "cell", 1)[0]
    assert f"cell still here: {cell_pid}" in out


def test_the_interrupt_button_stops_every_level(nest, path):
    interrupted: list[bool] = []

    def on_message(msg):  # interrupt once both bottoms run: their output reached the front end
        if (msg["msg_type"] == "stream" and "bottom up" in msg["content"]["text"] and not interrupted
                and wait_until(lambda: len(_noted(path)) >= 6, 5)):
            interrupted.append(True)
            nest.interrupt()

    result = nest.run(cell("""
        %%timeout 60 -m fork
        note("cell")
        call_then_map(60)
    """), timeout=30, on_message=on_message)
    assert interrupted
    assert result.ename == "KeyboardInterrupt", result.traceback
    pids = [pid for _, pid in _noted(path)]
    assert _all_gone_within(pids, 1.0), [(r, p) for r, p in _noted(path) if not exited(p)]
    assert nest.value("1 + 1") == 2


def test_a_map_task_past_its_limit_takes_the_fork_call_inside_it(nest, path):
    result = nest.run("r = map_then_call(1)\n[o.status for o in r]")
    assert result.status == "ok", result.traceback
    assert result.out == "['stopped']"
    pids = [pid for _, pid in _noted(path)]
    assert len(pids) == 3  # the map worker's task, the fork call in it, the sleep
    assert _all_gone_within(pids, 1.0), [(r, p) for r, p in _noted(path) if not exited(p)]
