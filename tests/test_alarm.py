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


@pytest.mark.parametrize("mode", ["signal", "thread"])
def test_except_exception_in_a_retry_loop_cannot_keep_code_alive(mode):
    attempts = []

    @timeout(0.2, mode=mode)
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
    with pytest.raises(CellTimeoutError) as info, timeout(0.5):  # noqa: PT012 - the limited block is the case
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


# --- cleanup, leaks, forks (issue 16) -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["signal", "thread"])
def test_cleanup_gets_the_grace_and_the_error_names_where_the_limit_hit(mode):
    steps = []

    def body():
        try:
            spin()  # the limit hits here
        finally:
            for step in range(4):  # cleanup of 0.2 s, inside the 1 s grace
                spin(0.05)
                steps.append(step)

    def run():
        with timeout(0.2, mode=mode):
            body()

    errors = run_in_thread(run) if mode == "thread" else []
    if mode == "signal":
        with pytest.raises(CellTimeoutError) as info:
            run()
        errors = [info.value]
    assert steps == [0, 1, 2, 3]
    [error] = errors
    assert isinstance(error, CellTimeoutError)
    caller, last = traceback.extract_tb(error.__traceback__)[-2:]
    assert (caller.name, caller.line, last.name) == ("body", "spin()  # the limit hits here", "spin")


def test_cleanup_longer_than_the_grace_is_stopped_again():
    steps = []
    start = time.monotonic()
    with pytest.raises(CellTimeoutError) as info, timeout(0.2, grace=0.3):  # noqa: PT012 - the limited block is the case
        try:
            spin()
        finally:
            for step in range(100):
                spin(0.05)
                steps.append(step)
    took = time.monotonic() - start
    assert 0.4 <= took <= 2.0  # the limit, the grace, then the refire
    assert 3 <= len(steps) < 100
    # the error still points at where the limit hit, not at the cleanup the refire cut short
    assert traceback.extract_tb(info.value.__traceback__)[-2].line == "spin()"


@pytest.mark.parametrize("mode", ["signal", "thread"])
def test_a_bare_except_is_hit_again_after_the_grace(mode):
    swallowed = []
    start = time.monotonic()
    with pytest.raises(CellTimeoutError), timeout(0.1, mode=mode, grace=0.3):  # noqa: PT012 - the limited block is the case
        try:
            spin()
        except BaseException:  # the user's bare except
            swallowed.append(time.monotonic() - start)
        spin()
    stopped_at = time.monotonic() - start
    assert len(swallowed) == 1
    assert 0.08 <= swallowed[0] <= 0.6
    assert swallowed[0] + 0.25 <= stopped_at <= swallowed[0] + 1.5  # after the grace, not at once


@pytest.mark.parametrize("error", [RecursionError, MemoryError, KeyboardInterrupt, SystemExit])
def test_no_deadline_outlives_its_block_whatever_it_raised(error):
    @timeout(0.3)
    def deep(n):
        if n == 0:
            raise error("deep down")
        return deep(n - 1)

    with pytest.raises(error):
        deep(50)
    assert _alarm._stack == []
    spin(0.5)  # past the 0.3 s: no stray stop arrives in unrelated code


def test_a_recursion_error_inside_the_limits_own_bookkeeping_leaks_nothing():
    @timeout(0.3)
    def forever(n):
        return forever(n + 1)

    for _ in range(3):
        with pytest.raises(RecursionError):
            forever(0)
        assert _alarm._stack == []
    spin(0.5)


def test_a_forked_child_starts_with_no_deadline():
    import os

    with timeout(0.2):
        pid = os.fork()
        if pid == 0:  # the child: the parent's limit must not stop it
            try:
                spin(0.5)
                code = 0 if _alarm._stack == [] else 2
                try:  # and its own limits work: a watchdog and timer of its own
                    with timeout(0.1):
                        spin(2)
                    code = 3
                except CellTimeoutError:
                    pass
            except BaseException:
                code = 1
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_multiprocessing_workers_made_under_a_limit_keep_their_own_limits():
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with timeout(1):
        pool = context.Pool(2)
    try:
        result = pool.map_async(_task_needing_more_than_the_old_limit, [0.3, 0.3])
        assert result.get(timeout=20) == [0.3, 0.3]
    finally:
        pool.terminate()
        pool.join()


@timeout(10)
def _task_needing_more_than_the_old_limit(seconds):
    spin(0.8 + seconds)  # past the 1 s limit the pool was made under, counted from then
    return seconds


# --- asyncio, generators, inspect ----------------------------------------------------------------

def test_async_def_stays_a_coroutine_function_limited_as_a_whole():
    import asyncio
    import inspect

    async def original(x: int, *, y: str = "a") -> int:
        """Doc."""
        await asyncio.sleep(5)
        return x

    limited = timeout(0.2)(original)
    assert inspect.iscoroutinefunction(limited)
    assert inspect.signature(limited) == inspect.signature(original)
    assert (limited.__name__, limited.__doc__) == ("original", "Doc.")

    async def main():
        start = time.monotonic()
        with pytest.raises(CellTimeoutError):
            await limited(1)
        return time.monotonic() - start

    assert 0.15 <= asyncio.run(main()) <= 1.5


@pytest.mark.parametrize("form", ["async with", "with"])
@pytest.mark.parametrize("wait", ["await", "busy"])
def test_limits_in_coroutines_raise_there_and_the_loop_lives_on(form, wait):
    import asyncio

    async def body():
        if wait == "await":
            await asyncio.sleep(5)
        else:
            spin()

    async def limited():
        if form == "with":
            with timeout(0.2):
                await body()
        else:
            async with timeout(0.2):
                await body()

    async def main():
        caught = []
        try:
            await limited()
        except CellTimeoutError as err:  # the coroutine sees it, not asyncio.run
            caught.append(err.limit)
        other = await asyncio.gather(asyncio.sleep(0.01, result="loop alive"))
        return caught, other

    assert asyncio.run(main()) == ([0.2], ["loop alive"])


def test_a_coroutine_stopped_while_it_waits_is_named_where_it_awaited():
    import asyncio

    async def fetch():
        await asyncio.sleep(5)  # waits-here

    async def main():
        with pytest.raises(CellTimeoutError) as info:
            await timeout(0.1)(fetch)()
        return info.value.where

    where = asyncio.run(main())
    assert where.startswith("line ")
    assert where.endswith("in fetch() of test_alarm.py")


def test_concurrent_limited_coroutines_each_keep_their_own_limit():
    import asyncio

    @timeout(0.3)
    async def nap(seconds):
        await asyncio.sleep(seconds)
        return seconds

    async def main():
        return await asyncio.gather(nap(0.01), nap(1), nap(0.05), return_exceptions=True)

    quick, slow, also_quick = asyncio.run(main())
    assert (quick, also_quick) == (0.01, 0.05)
    assert isinstance(slow, CellTimeoutError)


def test_a_limit_does_not_swallow_a_cancel_that_is_not_its_own():
    import asyncio

    async def main():
        async def waits():
            async with timeout(5):
                await asyncio.sleep(5)

        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_generator_functions_are_refused_with_a_clear_type_error():
    def numbers():
        yield 1

    async def agen():
        yield 1

    for func in (numbers, agen):
        with pytest.raises(TypeError, match=r"generator function.*with timeout"):
            timeout(1)(func)


def test_fork_mode_refuses_coroutine_and_generator_functions():
    async def coro():
        return 1

    def gen():
        yield 1

    for func, what in ((coro, "coroutine function"), (gen, "generator function")):
        with pytest.raises(TypeError, match=f"mode='fork' runs a plain function.*{what}") as info:
            timeout(1, mode="fork")(func)
        assert "\n" not in str(info.value)


# --- tracers, debuggers ------------------------------------------------------------------------

def traced_work() -> int:
    total = 0
    for i in range(3):
        total += i
    return total


@pytest.mark.parametrize("mode", ["signal", "thread"])
def test_a_stop_never_removes_the_users_trace_function(mode):
    import sys

    calls = []

    def tracer(frame, event, arg):
        spin(0.00005)  # a slow tracer: stops often become due while it runs
        calls.append(event)
        return tracer

    for _ in range(3):
        sys.settrace(tracer)
        try:
            with pytest.raises(CellTimeoutError), timeout(0.05, mode=mode):  # noqa: PT012 - the limited block is the case
                while True:
                    traced_work()  # a new frame: the tracer runs for its events
            assert sys.gettrace() is tracer
        finally:
            sys.settrace(None)
    assert calls


def test_time_at_a_debugger_prompt_does_not_stop_the_debugger():
    import io
    import pdb

    answered = []

    class SlowUser(io.StringIO):
        """The person at the prompt: thinks for 0.6 s, then types 'continue'."""

        def readline(self, *args):
            spin(0.6)
            answered.append(time.monotonic())
            return "continue\n"

    debugger = pdb.Pdb(stdin=SlowUser(), stdout=io.StringIO())
    debugger.use_rawinput = False
    with pytest.raises(CellTimeoutError), timeout(0.2):  # noqa: PT012 - the limited block is the case
        debugger.set_trace()
        x = 1  # the prompt stops here
        spin()
    assert len(answered) == 1  # the prompt was answered, not cut short at 0.2 s
    assert x == 1


def test_a_kernel_timer_sends_the_stop_where_the_platform_has_one():
    from nbtimeout._engines import delivery, ktimer
    from nbtimeout._process.facilities import PORTABLE

    with pytest.raises(CellTimeoutError), timeout(0.05):
        time.sleep(1)
    made = isinstance(delivery.SIGNAL._timer, ktimer.KernelTimer)
    assert made == (ktimer._functions() is not None and not PORTABLE)


@pytest.mark.parametrize("mode", ["signal", "thread"])
def test_no_grace_means_the_stop_is_raised_again_at_the_refire(mode):
    steps = []
    with pytest.raises(CellTimeoutError), timeout(0.1, mode=mode, grace=1e-9):  # noqa: PT012 - the block is the case
        try:
            spin()
        finally:
            for step in range(40):
                spin(0.01)
                steps.append(step)
    assert 1 <= len(steps) < 40  # cut short about REFIRE (50 ms) into the cleanup


@pytest.mark.parametrize("pool", ["process", "thread"])
def test_an_executor_shut_down_by_a_stopped_block_leaves_nothing_running(pool):
    import concurrent.futures

    import psutil

    kind = concurrent.futures.ProcessPoolExecutor if pool == "process" else concurrent.futures.ThreadPoolExecutor
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    threads_before = set(threading.enumerate())
    with pytest.raises(CellTimeoutError), timeout(0.3), kind(2) as executor:  # noqa: PT012 - the block is the case
        futures = [executor.submit(time.sleep, 0.4) for _ in range(2)]
        spin()
    # __exit__ waited for the running tasks within the grace: they finished, nothing is left
    assert all(f.done() and f.exception() is None for f in futures)
    assert {p.pid for p in psutil.Process().children(recursive=True)} - before == set()
    left = set(threading.enumerate()) - threads_before
    assert not [t for t in left if t.is_alive() and t.name != "nbtimeout-watchdog"]
