"""A fork child's exception through the Python API, in-process: chain, frames, locals (issue 17)."""

from __future__ import annotations

import builtins
import signal
import sys
import threading
import time

import cloudpickle
import pytest

import nbtimeout
from nbtimeout import CellTimeoutError
from nbtimeout._fork.errors import carry, rebuild
from nbtimeout._fork.frames import LOCALS_DEPTH, ChildRepr
from nbtimeout._fork.protocol import ChildError


class TwoArgs(Exception):  # noqa: N818 - named as a user would
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.a = a


class BadStr(Exception):  # noqa: N818
    def __str__(self):
        raise RuntimeError("no str")


class Holds(ValueError):  # noqa: N818
    pass


class Frozen(Exception):  # noqa: N818
    def __setattr__(self, name, value):
        raise AttributeError("frozen")


def forked(func):
    return nbtimeout.timeout(10, mode="fork")(func)


def frames(error: BaseException) -> list[tuple[str, int]]:
    tb, found = error.__traceback__, []
    while tb is not None:
        found.append((tb.tb_frame.f_code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return found


def test_cause_context_suppression_and_notes_arrive():
    @forked
    def chained():
        try:
            try:
                {}["k"]
            except KeyError as e:
                raise ValueError("v") from e
        except ValueError:
            error = RuntimeError("outer")
            error.add_note("a note")
            raise error from None

    with pytest.raises(RuntimeError, match="outer") as info:
        chained()
    outer = info.value
    assert outer.__notes__ == ["a note"]
    assert outer.__cause__ is None
    assert outer.__suppress_context__ is True
    middle = outer.__context__
    assert type(middle) is ValueError
    assert type(middle.__cause__) is KeyError
    assert middle.__context__ is middle.__cause__  # one object, as in the child
    assert "RuntimeError: outer" in str(outer.remote_traceback)
    for error in (outer, middle, middle.__cause__):
        assert [name for name, _ in frames(error)][-1] == "chained"


GROUP = getattr(builtins, "ExceptionGroup", None)


@pytest.mark.skipif(GROUP is None, reason="exception groups are Python 3.11+")
def test_nested_group_members_keep_their_tracebacks():
    @forked
    def grouped():
        def fail(kind):
            raise kind("member")
        caught = []
        for kind in (ValueError, TypeError):
            try:
                fail(kind)
            except Exception as e:
                caught.append(e)
        raise GROUP("outer", [GROUP("inner", caught[:1]), caught[1]])

    with pytest.raises(GROUP) as info:
        grouped()
    inner, second = info.value.exceptions
    assert (type(inner), str(inner), type(second)) == (GROUP, "inner (1 sub-exception)", TypeError)
    for member in (inner.exceptions[0], second):
        assert [name for name, _ in frames(member)][-2:] == ["grouped", "fail"]


def test_custom_init_arrives_as_itself_and_a_bad_str_too():
    @forked
    def custom():
        raise TwoArgs(1, 2)

    @forked
    def bad():
        raise BadStr()

    with pytest.raises(TwoArgs, match="1-2") as info:
        custom()
    assert info.value.a == 1
    assert not hasattr(info.value, "__notes__")
    with pytest.raises(BadStr) as bad_info:
        bad()
    with pytest.raises(RuntimeError, match="no str"):
        str(bad_info.value)


def test_a_class_that_refuses_attributes_still_gets_its_chain():
    @forked
    def frozen():
        try:
            {}["k"]
        except KeyError as e:
            raise Frozen("cold") from e

    with pytest.raises(Frozen, match="cold") as info:
        frozen()
    assert type(info.value.__cause__) is KeyError
    assert "Frozen: cold" in str(info.value.remote_traceback)


def test_unpicklable_member_is_a_stand_in_of_the_same_kind_alone():
    @forked
    def holds():
        error = Holds("has a lock")
        error.lock = threading.Lock()
        try:
            {}["k"]
        except KeyError as e:
            raise error from e

    with pytest.raises(ValueError, match="has a lock") as info:
        holds()
    error = info.value
    assert isinstance(error, ChildError)
    assert (type(error).__name__, type(error).__module__) == ("Holds", __name__)
    assert "cannot pickle '_thread.lock' object" in error.__notes__[-1]
    assert type(error.__cause__) is KeyError  # the rest of the chain is itself


def test_a_class_the_kernel_lacks_is_a_stand_in_that_says_so():
    @forked
    def ghostly():
        import types

        ghost = types.ModuleType("nbtimeout_ghost")  # exists in the child only
        sys.modules["nbtimeout_ghost"] = ghost
        exec("class GhostError(LookupError):\n    pass", ghost.__dict__)
        try:
            {}["k"]
        except KeyError as e:
            raise ghost.GhostError("boo") from e

    with pytest.raises(LookupError, match="boo") as info:
        ghostly()
    error = info.value
    assert (type(error).__name__, type(error).__module__) == ("GhostError", "nbtimeout_ghost")
    assert "unpickling it in the kernel failed: ModuleNotFoundError" in error.__notes__[-1]
    assert type(error.__cause__) is KeyError


def test_locals_travel_as_values_or_reprs():
    @forked
    def work(n):
        small, text = [1, 2, 3], "hello"  # noqa: F841 - locals to look at
        lock = threading.Lock()  # noqa: F841
        big = list(range(100_000))  # noqa: F841
        raise KeyError(n)

    with pytest.raises(KeyError) as info:
        work(5)
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    values = tb.tb_frame.f_locals
    assert (values["n"], values["small"], values["text"]) == (5, [1, 2, 3], "hello")
    assert isinstance(values["lock"], ChildRepr)
    assert repr(values["lock"]).startswith("<unlocked _thread.lock object at 0x")
    assert isinstance(values["big"], ChildRepr)
    assert repr(values["big"]).startswith("[0, 1, 2,")
    assert len(repr(values["big"])) < 400


def test_a_recursion_error_travels_small_and_whole():
    def rec(n):
        return rec(n + 1)

    try:
        rec(0)
    except RecursionError as err:
        error = err
    depth = len(frames(error))
    carried = carry(error)
    size = len(cloudpickle.dumps(carried))
    assert size < 300_000, size
    rebuilt = rebuild(carried)
    assert type(rebuilt) is RecursionError
    assert len(frames(rebuilt)) == depth  # every frame, so renderers count the repeats right
    assert sum(1 for s in carried.links[0].scopes if s[2] is not None) == LOCALS_DEPTH


def test_a_stopped_childs_frames_say_their_locals_did_not_travel():
    @nbtimeout.timeout(1, mode="fork", grace=0.2)
    def spin():
        j = 3  # noqa: F841 - there to be asked for
        while True:
            pass

    with pytest.raises(CellTimeoutError) as info:
        spin()
    tb = info.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "spin"
    with pytest.raises(NameError, match="not available: the fork child's variables were not carried back"):
        eval("j", tb.tb_frame.f_globals, tb.tb_frame.f_locals)


def test_own_sigterm_handler_keeps_where_the_stop_was():
    @nbtimeout.timeout(1, mode="fork", grace=0.2)
    def stubborn():
        signal.signal(signal.SIGTERM, lambda *a: None)
        while True:
            time.sleep(0.01)

    with pytest.raises(CellTimeoutError) as info:
        stubborn()
    assert "stubborn" in (info.value.where or "")
    assert "time.sleep(0.01)" in (info.value.stack or "")


def test_a_refused_sigterm_handler_keeps_the_dump():
    @nbtimeout.timeout(1, mode="fork", grace=0.2)
    def refused():
        def install():
            with pytest.raises(ValueError, match="main thread"):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
        thread = threading.Thread(target=install)
        thread.start()
        thread.join()
        while True:
            time.sleep(0.01)

    with pytest.raises(CellTimeoutError) as info:
        refused()
    assert "refused" in (info.value.where or "")


def test_map_failure_keeps_the_chain():
    def task(i):
        try:
            {}[i]
        except KeyError as e:
            raise ValueError(f"bad {i}") from e

    results = nbtimeout.map(task, [1], timeout=10, workers=1)
    error = results[0].error
    assert (results[0].status, type(error), type(error.__cause__)) == ("failed", ValueError, KeyError)
    assert [name for name, _ in frames(error.__cause__)][-1] == "task"


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_stream_set_to_none_breaks_neither_a_forked_call_nor_map(monkeypatch, name):
    @forked
    def talk(i):
        print("to", name, file=getattr(sys, name))
        return i + 1

    monkeypatch.setattr(sys, name, None)
    assert talk(1) == 2
    assert nbtimeout.map(talk, [1, 2], timeout=10, workers=2).values() == [2, 3]
