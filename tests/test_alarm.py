"""In-process: the signal engine (a stack of deadlines over setitimer) and the ``timeout`` API."""

from __future__ import annotations

import pickle
import signal
import threading
import time
import traceback

import pytest

import nbtimeout
from nbtimeout import CellTimeoutError, EngineUnavailableError, timeout
from nbtimeout._engines import alarm as _alarm
from nbtimeout._errors import _Expired

# pytest-timeout's default method owns SIGALRM; these tests need it free to check what is left behind.
pytestmark = pytest.mark.timeout(60, method="thread")


def spin(seconds: float = 5.0) -> None:
    """Busy Python code that the alarm interrupts; gives up after ``seconds`` so a bug cannot hang."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.fixture(autouse=True)
def _clean_alarm_state():
    """Every test starts and ends with no handler of ours, no timer and no deadline."""
    def state():
        return signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL), list(_alarm._stack)

    assert state() == (signal.SIG_DFL, (0.0, 0.0), [])
    yield
    assert state() == (signal.SIG_DFL, (0.0, 0.0), []), "an alarm or handler was left behind"


def test_context_manager_raises_cell_timeout_error():
    start = time.monotonic()
    with pytest.raises(CellTimeoutError) as info, timeout(0.2):
        spin()
    took = time.monotonic() - start
    assert 0.15 <= took <= 1.5
    error = info.value
    assert isinstance(error, TimeoutError)
    assert (error.limit, error.engine) == (0.2, "signal")
    assert 0.15 <= error.elapsed <= 1.5
    assert str(error) == "ran past its 200 ms limit (signal engine)"
    # the traceback ends in the user's code, not in the alarm handler
    last = traceback.extract_tb(error.__traceback__)[-1]
    assert last.filename == __file__
    assert last.name == "spin"
    assert error.where == f"line {last.lineno} in spin() of test_alarm.py"


def test_context_manager_lets_quick_code_finish():
    with timeout("500ms") as limit:
        total = sum(range(1000))
    assert total == 499500
    assert isinstance(limit, timeout)


def test_decorator_raises_and_keeps_the_function():
    @timeout(0.2)
    def slow(n: int) -> int:
        """Doc."""
        spin()
        return n

    @timeout(0.2)
    def quick(n: int, *, k: int = 0) -> int:
        return n + k

    assert (slow.__name__, slow.__doc__) == ("slow", "Doc.")
    assert quick(40, k=2) == 42
    with pytest.raises(CellTimeoutError) as info:
        slow(1)
    assert info.value.limit == 0.2
    # the decorator can be called again: each call has its own limit
    with pytest.raises(CellTimeoutError):
        slow(2)


def test_decorator_stops_a_c_function_that_sleeps():
    # The wrapper is the innermost Python frame here: it must not be mistaken for bookkeeping.
    start = time.monotonic()
    with pytest.raises(CellTimeoutError):
        timeout(0.2)(time.sleep)(5)
    assert time.monotonic() - start <= 1.5


def test_durations_with_units_in_the_api():
    assert timeout("1.5m").seconds == 90.0
    assert timeout("1h").seconds == 3600.0
    with pytest.raises(CellTimeoutError) as info, timeout("150ms"):
        spin()
    assert info.value.limit == pytest.approx(0.15)


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", 0, -1, "0ms"])
def test_api_refuses_bad_limits(bad):
    with pytest.raises(ValueError, match=r"timeout\(seconds\)"):
        timeout(bad)


def test_api_refuses_unknown_mode():
    with pytest.raises(ValueError, match="auto, signal, thread, fork"):
        timeout(1, mode="threads")


def test_except_exception_in_a_retry_loop_cannot_keep_code_alive():
    attempts = []

    @timeout(0.2)
    def retry_forever():
        while True:
            try:
                spin(0.01)
                raise ConnectionError("flaky")
            except Exception:  # the user's retry: must not swallow the timeout
                attempts.append(1)

    with pytest.raises(CellTimeoutError):
        retry_forever()
    assert attempts


def test_expired_is_not_an_exception():
    # This is what lets ``except Exception`` in user code pass the unwinding through.
    assert not issubclass(_Expired, Exception)
    assert issubclass(CellTimeoutError, TimeoutError)


def test_inner_limit_fires_first_and_the_outer_keeps_its_deadline():
    seen = {}

    @timeout(0.5)
    def outer_cell():
        try:
            with timeout(0.2):
                spin()
        except TimeoutError as inner:
            seen["caught"], seen["caught_at"] = inner, time.monotonic() - start
        # The outer deadline is absolute: what is left of it, not a fresh 0.5 s.
        seen["left"] = _alarm._stack[0].expires - time.monotonic()
        spin()

    start = time.monotonic()
    with pytest.raises(CellTimeoutError) as outer:
        outer_cell()
    fired_at = time.monotonic() - start
    caught, caught_at = seen["caught"], seen["caught_at"]
    assert 0 < seen["left"] <= 0.5 - caught_at + 0.01
    assert isinstance(caught, CellTimeoutError)
    assert caught.limit == 0.2
    assert 0.15 <= caught_at <= 1.5
    assert outer.value.limit == 0.5
    assert caught_at < fired_at
    assert 0.45 <= fired_at <= 2.0


def test_outer_limit_cannot_be_caught_by_code_inside_it():
    caught = []

    @timeout(0.2)
    def outer_cell():
        try:
            with timeout(5):
                spin()
        except TimeoutError as err:  # the inner block's handler must not absorb the outer limit
            caught.append(err)

    with pytest.raises(CellTimeoutError) as info:
        outer_cell()
    assert caught == []
    assert info.value.limit == 0.2


def test_one_timeout_object_can_be_nested_in_itself():
    limit = timeout(0.2)
    depth = []

    def body():
        with limit:
            with limit:
                depth.append(len(_alarm._stack))
            depth.append(len(_alarm._stack))
            spin()

    with pytest.raises(CellTimeoutError):
        body()
    assert depth == [2, 1]


def test_a_handler_and_itimer_that_existed_before_are_restored():
    hits = []

    def handler(signum, frame):
        hits.append(signum)

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 5, 7)
    try:
        with pytest.raises(CellTimeoutError), timeout(0.1):
            spin()
        with timeout(0.5):
            pass
        assert signal.getsignal(signal.SIGALRM) is handler
        left, interval = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < left <= 5.0
        assert interval == 7.0
        assert hits == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_a_users_alarm_inside_a_limit_fires_when_due_and_the_limit_still_fires():
    # The classic pattern of libraries: their own SIGALRM handler and signal.alarm in the block.
    hits = []

    def handler(signum, frame):
        hits.append(time.monotonic() - start)

    start = time.monotonic()
    with pytest.raises(CellTimeoutError) as info, timeout(0.5):
        old = signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        try:
            spin()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    assert 0.45 <= time.monotonic() - start <= 1.5
    assert info.value.limit == 0.5
    assert len(hits) == 1
    assert 0.08 <= hits[0] <= 0.4  # the user's alarm was not held back nor removed


def test_a_users_alarm_set_in_a_limit_survives_the_block():
    hits = []
    signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
    try:
        with timeout(2):
            signal.setitimer(signal.ITIMER_REAL, 0.2)
        end = time.monotonic() + 2
        while not hits and time.monotonic() < end:
            pass
        assert hits == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_nothing_is_left_armed_after_an_error_in_the_body():
    with pytest.raises(KeyError), timeout(0.2):
        raise KeyError("x")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL


def run_in_thread(func):
    errors: list[BaseException] = []

    def target():
        try:
            func()
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target, name="worker-1")
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return errors


@pytest.mark.parametrize("use", ["with", "decorator"])
def test_off_the_main_thread_auto_takes_the_thread_engine(use):
    def with_block():
        with timeout(0.2):
            spin()

    def decorated():
        timeout(0.2)(spin)()

    start = time.monotonic()
    errors = run_in_thread(with_block if use == "with" else decorated)
    assert 0.15 <= time.monotonic() - start <= 1.5
    assert [type(e) for e in errors] == [CellTimeoutError]
    assert errors[0].engine == "thread"
    assert errors[0].where.endswith("in spin() of test_alarm.py")


def test_signal_mode_off_the_main_thread_names_the_thread_engine():
    def with_block():
        with timeout(0.2, mode="signal"):
            pass

    [error] = run_in_thread(with_block)
    assert isinstance(error, EngineUnavailableError)
    message = str(error)
    assert "main thread" in message
    assert "'worker-1'" in message
    assert "mode='thread'" in message
    assert "\n" not in message


def test_without_pthread_kill_auto_takes_the_thread_engine(monkeypatch):
    monkeypatch.delattr(signal, "pthread_kill")
    with pytest.raises(EngineUnavailableError, match=r"pthread_kill.*mode='thread'"), timeout(0.2, mode="signal"):
        pass
    with pytest.raises(CellTimeoutError) as info, timeout(0.2):
        spin()
    assert info.value.engine == "thread"


def test_fork_mode_is_for_decorators_only():
    with pytest.raises(EngineUnavailableError, match="decorator"), timeout(1, mode="fork"):
        pass


def test_cell_timeout_error_pickles():
    error = CellTimeoutError(0.2, 0.21, "signal", where="line 3 of In [4]")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy)) == (CellTimeoutError, str(error))
    assert (copy.limit, copy.elapsed, copy.engine, copy.where) == (0.2, 0.21, "signal", "line 3 of In [4]")


def test_public_names():
    assert nbtimeout.timeout is timeout
    assert nbtimeout.CellTimeoutError is CellTimeoutError
    assert set(nbtimeout.__all__) >= {"timeout", "CellTimeoutError", "__version__"}
