"""An outer in-kernel limit stops fork work nested inside it: the wait for the child is interruptible."""

from __future__ import annotations

import os
import time

import pytest
from procs import children, exited, wait_until

from nbtimeout import CellTimeoutError, timeout


def _sleep_and_tell(path: str, seconds: float) -> None:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def _pid_from(path: str) -> int:
    assert wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0)
    with open(path) as f:
        return int(f.read())


@pytest.mark.parametrize("outer", ["with", "decorator"])
def test_an_outer_signal_limit_stops_a_fork_call_inside_it(tmp_path, outer):
    path = str(tmp_path / "pid")
    inner = timeout(30, mode="fork")(_sleep_and_tell)

    def in_a_block() -> None:
        with timeout(1):
            inner(path, 30)

    call = in_a_block if outer == "with" else lambda: timeout(1)(inner)(path, 30)
    started = time.monotonic()
    with pytest.raises(CellTimeoutError) as info:
        call()
    assert info.value.limit == 1
    assert time.monotonic() - started < 5
    child = _pid_from(path)
    assert wait_until(lambda: exited(child)), "the fork child outlived the outer limit"
    assert child not in children(os.getpid())  # reaped, not a zombie


def test_an_inner_fork_limit_still_stops_only_itself(tmp_path):
    path = str(tmp_path / "pid")
    with timeout(20):
        with pytest.raises(CellTimeoutError) as info:
            timeout(0.5, mode="fork")(_sleep_and_tell)(path, 30)
        assert info.value.engine == "fork"
        after = "the outer block goes on"
    assert after


def test_a_signal_cell_stops_a_fork_call_and_a_fork_cell_inside_it(kernel):
    kernel.run("import time\nfrom nbtimeout import timeout\n"
               "@timeout(30, mode='fork')\ndef slow():\n    time.sleep(30)")
    for body in ("slow()", "get_ipython().run_cell_magic('timeout', '30 -m fork -q', 'time.sleep(30)')"):
        started = time.monotonic()
        result = kernel.run(f"%%timeout 1 -q\n{body}")
        assert result.ename == "CellTimeoutError", result.traceback
        assert "1 s limit (signal engine)" in result.evalue
        assert time.monotonic() - started < 6
        assert wait_until(lambda: not children(kernel.pid)), children(kernel.pid)
        assert kernel.run("print('next cell')").stream() == "next cell\n"
