"""Cells with top-level ``await`` under ``%%timeout`` and ``%timeout N`` (issue 10, point 3).

They run on the kernel's own event loop, as without the magic (tasks from earlier cells go on
while the cell waits), each step under the limit; the limit cancels a cell that waits too long.
"""

from __future__ import annotations

import os
import re
import signal
import textwrap
import threading
import time

import pytest
from kernelclient import Kernel
from procs import wait_until

pytestmark = pytest.mark.timeout(120)

SIG_STATE = "(signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))"


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _imports(kernel):
    assert kernel.run("import asyncio, signal, time, nbtimeout").status == "ok"


@pytest.fixture(autouse=True)
def _kernel_left_clean(kernel):
    yield
    assert kernel.value(SIG_STATE) == (True, (0.0, 0.0))
    assert kernel.value("signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.default_int_handler)")


AWAIT_CELLS = {
    "await a sleep": ("await asyncio.sleep(0.05)\n'slept'", "'slept'"),
    "value of an await": ("async def f(x):\n    await asyncio.sleep(0)\n    return x * 2\nawait f(21)", "42"),
    "await in an assignment": ("got = await asyncio.sleep(0, result=5)\ngot + 1", "6"),
    "async for": ("async def gen():\n    for i in range(3):\n        yield i\ntotal = 0\n"
                  "async for i in gen():\n    total += i\ntotal", "3"),
    "async with": ("lock = asyncio.Lock()\nasync with lock:\n    inside = lock.locked()\ninside", "True"),
    "gather": ("a, b = await asyncio.gather(asyncio.sleep(0.01, 1), asyncio.sleep(0.02, 2))\na + b", "3"),
    "a shell line and a magic too": ("await asyncio.sleep(0)\n%time x = 1\n!true\nx", "1"),
}


@pytest.mark.parametrize("name", list(AWAIT_CELLS))
def test_an_await_cell_gives_the_same_answer_with_and_without_a_limit(kernel, name):
    code, out = AWAIT_CELLS[name]
    plain = kernel.run(code)
    assert (plain.status, plain.out) == ("ok", out), plain.traceback
    typed = kernel.run(f"%%timeout 5\n{code}")
    assert (typed.status, typed.out) == ("ok", out), typed.traceback
    assert kernel.run("%timeout 5").status == "ok"
    try:
        every = kernel.run(code)
    finally:
        kernel.run("%timeout off")
    assert (every.status, every.out) == ("ok", out), every.traceback


def test_the_kernels_loop_runs_other_tasks_while_the_cell_waits(kernel):
    setup = cell("""
        ticks = []
        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)
        ticking = asyncio.ensure_future(ticker())
    """)
    assert kernel.run(setup).status == "ok"
    try:
        result = kernel.run("%%timeout 2\nn = len(ticks)\nawait asyncio.sleep(0.3)\nlen(ticks) - n >= 5")
        assert (result.status, result.out) == ("ok", "True"), result.traceback
        # a queue made on the kernel's loop in an earlier cell works in a timed cell
        assert kernel.run("q = asyncio.Queue()\nq.put_nowait('item')").status == "ok"
        got = kernel.run("%%timeout 2\nawait q.get()")
        assert (got.status, got.out) == ("ok", "'item'"), got.traceback
    finally:
        kernel.run("ticking.cancel()")


def test_a_cell_that_waits_too_long_is_stopped_at_its_await(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5
        _t0 = time.monotonic()
        before = 1
        await asyncio.sleep(5)  # waits-here
        after = 1
    """))
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 500 ms limit (signal engine)"
    assert re.search(r"----> 4 await asyncio.sleep\(5\)  # waits-here", result.traceback), result.traceback
    assert 0.45 <= kernel.value("time.monotonic() - _t0") <= 1.5
    assert kernel.value("'before' in dir() and 'after' not in dir()")
    assert any("Stopped" in text for text in result.displays())


def test_a_cell_that_spins_between_awaits_is_stopped(kernel):
    result = kernel.run("%%timeout 0.5\nawait asyncio.sleep(0)\nspins = 0\nwhile True: spins += 1")
    assert result.ename == "CellTimeoutError"
    assert result.evalue == "ran past its 500 ms limit (signal engine)"  # the cell's limit, not what was left
    assert "----> 4 while True: spins += 1" in result.traceback


def test_swallowing_the_cancel_does_not_keep_the_cell_alive(kernel):
    result = kernel.run(cell("""
        %%timeout 0.5
        _t0 = time.monotonic()
        for i in range(100):
            try:
                await asyncio.sleep(1)
            except BaseException:
                pass
    """))
    assert result.ename == "CellTimeoutError"
    assert kernel.value("time.monotonic() - _t0") <= 1.5


def test_an_await_cell_that_raises_raises_as_without_the_limit(kernel):
    result = kernel.run("%%timeout 2\nawait asyncio.sleep(0)\n1/0")
    assert result.ename == "ZeroDivisionError"
    assert "----> 3 1/0" in result.traceback


def test_the_cancel_is_the_cells_own_when_it_is_not_the_limit(kernel):
    result = kernel.run("%%timeout 2\nt = asyncio.ensure_future(asyncio.sleep(5))\nt.cancel()\nawait t")
    assert result.ename == "CancelledError"


def test_interrupt_during_an_await_cell_cancels_it_at_once(kernel):
    # Without nbtimeout ipykernel 7 ends such a cell with CancelledError, but only once the sleep is
    # over; a timed cell is cancelled when ■ is pressed, and ends in the user's code.
    def press() -> None:
        wait_until(lambda: kernel_started.is_set(), 10)
        time.sleep(0.5)
        os.killpg(os.getpgid(kernel.pid), signal.SIGINT)

    kernel_started = threading.Event()
    presser = threading.Thread(target=press)
    presser.start()
    started = time.monotonic()
    try:
        result = kernel.run("%%timeout 30\nawait asyncio.sleep(20)  # waiting-here",
                            on_message=lambda m: m["msg_type"] == "execute_input" and kernel_started.set())
    finally:
        presser.join()
    assert result.ename == "CancelledError"
    assert time.monotonic() - started < 10
    assert "----> 2 await asyncio.sleep(20)  # waiting-here" in result.traceback
    assert "nbtimeout/" not in result.traceback.split("waiting-here")[-1]
    assert kernel.run("'next'").out == "'next'"


def test_fork_mode_refuses_a_cell_that_awaits_in_one_line(kernel):
    result = kernel.run("%%timeout 2 -m fork\nawaited_in_fork = 1\nawait asyncio.sleep(0)")
    assert result.ename == "UsageError"
    assert "-m signal" in result.evalue
    assert "\n" not in result.evalue
    assert kernel.value("'awaited_in_fork' in dir()") is False


def test_the_every_cell_limit_in_fork_mode_runs_an_await_cell_in_the_kernel_and_says_so(kernel):
    assert kernel.run("%timeout 2 -m fork").status == "ok"
    try:
        result = kernel.run("await asyncio.sleep(0.01)\n'ran'")
        plain = kernel.run("'not awaiting'")
    finally:
        kernel.run("%timeout off")
    assert (result.status, result.out) == ("ok", "'ran'")
    assert result.stream("stderr").strip().count("\n") == 0
    assert "signal engine" in result.stream("stderr")
    assert plain.stream("stderr") == ""


def test_a_nested_timed_cell_that_awaits_says_what_to_do(kernel):
    result = kernel.run("%%timeout 5\nget_ipython().run_cell_magic('timeout', '1', 'await asyncio.sleep(0)')")
    assert result.ename == "UsageError"
    assert "\n" not in result.evalue
    assert "async def" in result.evalue


def test_autoawait_off_is_respected(kernel: Kernel):
    assert kernel.run("%autoawait off").status == "ok"
    try:
        plain = kernel.run("await asyncio.sleep(0)")
        timed = kernel.run("%%timeout 1\nawait asyncio.sleep(0)")
    finally:
        kernel.run("%autoawait on")
    assert plain.ename == "SyntaxError"
    assert timed.ename == "UsageError"  # says what to do, in one line
    assert "%autoawait" in timed.evalue


def test_a_process_an_await_cell_started_is_stopped_with_it(kernel):
    result = kernel.run("%%timeout 0.5\naproc = await asyncio.create_subprocess_exec('sleep', '30.91')\n"
                        "await aproc.wait()")
    assert result.ename == "CellTimeoutError"
    assert "----> 3 await aproc.wait()" in result.traceback
    assert "nbtimeout/" not in result.traceback.split("----> 3 await aproc.wait()")[1]  # ends in the user's code
    assert wait_until(lambda: kernel.value("aproc.returncode") == -signal.SIGTERM, 5)
