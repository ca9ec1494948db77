"""The fork engine through the Python API, in-process: large results and the child's errors."""

from __future__ import annotations

import numpy as np
import pytest

import nbtimeout
from nbtimeout import CellCrashedError, CellTimeoutError
from nbtimeout._fork.protocol import OUT_OF_BAND


def test_large_array_comes_back_whole_and_writable():
    @nbtimeout.timeout(30, mode="fork")
    def make(n):
        return {"a": np.arange(n, dtype=np.int64), "b": b"x" * n, "small": np.ones(3)}

    n = 4 * OUT_OF_BAND + 123  # several out-of-band buffers, none a multiple of the chunk size
    result = make(n)
    assert np.array_equal(result["a"], np.arange(n, dtype=np.int64))
    assert result["b"] == b"x" * n
    result["a"][0] = -1  # arrays on received buffers are writable, like any other array
    assert result["a"][0] == -1
    assert result["small"].tolist() == [1.0, 1.0, 1.0]


def test_child_exception_has_its_type_and_the_childs_traceback_text():
    @nbtimeout.timeout(5, mode="fork")
    def fail():
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing") as info:
        fail()
    assert "raise KeyError" in str(info.value.remote_traceback)
    assert info.value.__cause__ is None  # the child's own chain, not the text (issue 17)


def test_a_child_that_dies_mid_result_is_a_crash_not_a_hang():
    import os

    @nbtimeout.timeout(5, mode="fork")
    def die():
        os._exit(3)

    with pytest.raises(CellCrashedError, match="exited with code 3"):
        die()


def test_timeout_in_c_code():
    @nbtimeout.timeout(0.2, mode="fork", grace=0.1)
    def stuck():
        return sum(range(10**10))

    with pytest.raises(CellTimeoutError) as info:
        stuck()
    assert info.value.engine == "fork"
    assert "stuck" in (info.value.where or "")
