"""A timed cell run in the kernel (signal engine), and what makes it end the way it should.

- The processes the cell started are stopped with it, on its limit and on ■ (see ``_process.tree``).
- A limit that fired ends the cell as stopped, whatever caught the stop on the way: IPython's
  ``%run`` and ``%%capture`` catch everything with a bare ``except:``.
- A cell with top-level ``await`` runs on the kernel's event loop: each step of the coroutine runs
  under the alarm, and while it waits, the task is cancelled at the deadline (an alarm must never
  unwind the event loop itself).
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import sys
import threading
import time
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from IPython.core.error import UsageError

from .._engines import alarm as _alarm
from .._errors import CellTimeoutError, _Expired
from .._process.tree import Started, watcher
from .._where import trim_tail
from . import interrupts
from .cell import CompiledCell, compile_cell
from .options import AWAITED_FLAG, Options

MIN_STEP = 1e-3  # the shortest alarm a step of an await cell is given once its time is nearly up
NEEDS_AWAIT = ("%%timeout: this cell awaits at top level, which works when %%timeout is the cell's "
               "first line with %autoawait on; otherwise put the awaits in an async def and asyncio.run it")
FORK_AWAITS = "%%timeout: a fork child cannot await on the kernel's event loop: use -m signal for a cell that awaits"
FORK_AWAITS_NOTE = "nbtimeout: this cell awaits, so it ran on the signal engine, not in a fork child"


def prepare(shell: Any, line: str, body: str, options: Options) -> tuple[Options, CompiledCell]:
    """The options a run will use and its compiled body. Whatever refuses the cell (a
    SyntaxError, UsageError, EngineUnavailableError) is raised here, before anything is shown."""
    if options.awaited and options.mode == "fork":
        if not options.added:
            raise UsageError(FORK_AWAITS)
        print(FORK_AWAITS_NOTE, file=sys.stderr)  # the every-cell limit must not break the cell
        options = dataclasses.replace(options, mode="signal")
    compiled = compile_body(shell, line.replace(AWAITED_FLAG, "").rstrip(), body, options)
    if options.mode != "fork":  # auto becomes the engine it picks here: signal or thread
        options = dataclasses.replace(options, mode=_alarm.check_available(options.mode))
    return options, compiled


def drive(run: Generator[Any, Any, Any]) -> Any:
    """The value of a timed run that never waits (see ``Awaiting``)."""
    __tracebackhide__ = True
    try:
        run.send(None)
    except StopIteration as done:
        return done.value
    run.close()
    raise RuntimeError("a timed run waited outside an event loop")


class Awaiting:
    """What the code of a cell that awaits awaits: the timed run, suspended while the cell waits."""

    __slots__ = ("_run",)

    def __init__(self, run: Generator[Any, Any, Any]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._run


def compile_body(shell: Any, line: str, body: str, options: Options) -> CompiledCell:
    """``compile_cell``, allowing top-level ``await`` when the cell will be awaited."""
    if not options.awaited:
        try:
            return compile_cell(shell, line, body, typed=not options.added)
        except SyntaxError as err:
            if "outside function" in str(err) and ("await" in str(err) or "async" in str(err)):
                raise UsageError(NEEDS_AWAIT) from None
            raise
    with shell.compile.extra_flags(ast.PyCF_ALLOW_TOP_LEVEL_AWAIT):
        return compile_cell(shell, line, body, typed=not options.added)


def awaits(body: str, shell: Any) -> bool:
    """Whether ``body`` (IPython syntax) awaits at top level, as IPython decides for a cell."""
    if "await" not in body and "async" not in body:  # most cells: no transform, no compile
        return False
    from IPython.core.async_helpers import _should_be_async

    try:
        return _should_be_async(shell.transform_cell(body))
    except Exception:  # a syntax error is reported when the cell runs, as without the magic
        return False


class _Guard:
    """Around one timed run: the processes it starts, whether any of its limits fired, and
    whether ■ was pressed (code such as IPython's ``!cmd`` swallows the KeyboardInterrupt)."""

    __slots__ = ("_last", "_sigint", "fired", "interrupted", "on_interrupt", "options", "processes", "started",
                 "token")

    def __init__(self, options: Options) -> None:
        self.options, self.fired, self.interrupted = options, False, False
        self.on_interrupt: Any = None
        self.started = time.monotonic()
        self.processes = Started()
        self.token = watcher.watch(self.processes, self.started + options.limit, options.grace)
        self._last = getattr(sys, "last_value", None)  # IPython's last shown error, to tell a new one
        self._sigint: interrupts.Watch | None = None
        if threading.current_thread() is threading.main_thread():
            self._sigint = interrupts.Watch(self._on_sigint)

    def _on_sigint(self) -> None:
        self.interrupted = True
        if self.on_interrupt is not None:
            self.on_interrupt()

    def left(self) -> float:
        return max(self.started + self.options.limit - time.monotonic(), MIN_STEP)

    def ended(self, error: BaseException | None) -> None:
        """Stop what the run started if it was stopped; CellTimeoutError if a limit fired."""
        __tracebackhide__ = True
        watcher.cancel(self.token)
        # Stopped at the deadline by the watcher (the kernel waited in C): the limit fired, whatever the
        # engine has or has not delivered yet.
        self.fired |= self.processes.was_overdue()
        if self._sigint is not None:
            self._sigint.close()
        if isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
            trim_tail(error.__traceback__)  # ■ ends at the user's line, not in our handler or await
        # Its own limit or ■: an inner limit of the cell's code that escaped is an error like any other.
        if self.fired or self.interrupted or isinstance(error, KeyboardInterrupt):
            self.processes.stop(self.options.grace)
        if self.fired and not isinstance(error, CellTimeoutError):
            stop = self.timeout().with_traceback(self._stopped_at(error))
            # The limit stopped this cell, and code on the way (a bare except:, %run, %%capture) caught it:
            raise stop from None

    def _stopped_at(self, error: BaseException | None) -> TracebackType | None:
        """Where the stop hit: what the catcher raised, or the stop IPython showed (``%run``)."""
        if error is not None:
            return trim_tail(error.__traceback__)  # a cancel thrown in at our await ends in our frame
        shown = getattr(sys, "last_value", None)
        if isinstance(shown, _Expired) and shown is not self._last:
            return trim_tail(shown.__traceback__)
        return None

    def timeout(self) -> CellTimeoutError:
        """The error of this run stopped at its limit."""
        return CellTimeoutError(self.options.limit, time.monotonic() - self.started, self.options.mode)


def run(compiled: CompiledCell, shell: Any, options: Options) -> Any:
    """The cell's value, the body run in the kernel under the alarm."""
    __tracebackhide__ = True
    guard = _Guard(options)
    try:
        with _alarm.limited(options.limit, options.mode, options.grace) as deadline:
            try:
                value = compiled.run(shell.user_ns)
            finally:
                guard.fired = deadline.fired
    except BaseException as err:
        guard.ended(err)
        raise
    guard.ended(None)
    return value


async def run_awaited(compiled: CompiledCell, shell: Any, options: Options) -> Any:
    """The cell's value, its top-level awaits run on the kernel's event loop under the limit."""
    __tracebackhide__ = True
    guard = _Guard(options)
    canceller = _Canceller(guard)
    try:
        value = await _body(compiled, shell.user_ns, guard)
    except BaseException as err:
        canceller.close()
        guard.ended(err)
        raise
    canceller.close()
    guard.ended(None)
    return value


class _Canceller:
    """Cancels the cell's task at the deadline while it waits, and again every REFIRE seconds
    until it ends: code that swallows a CancelledError (a bare except:) cannot outlast the limit."""

    REFIRE = 0.05

    def __init__(self, guard: _Guard) -> None:
        self.guard, self.count = guard, 0
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(guard.options.limit, self.fire)
        # ■ cancels the cell's task at once (ipykernel's own cancel may wait for the loop's next event).
        guard.on_interrupt = lambda: self.task is not None and self.loop.call_soon_threadsafe(self.task.cancel)

    def fire(self) -> None:
        self.guard.fired = True
        if self.task is not None:
            self.task.cancel()
            self.count += 1
        self.handle = self.loop.call_later(self.REFIRE, self.fire)

    def close(self) -> None:
        self.handle.cancel()
        if self.task is not None and hasattr(self.task, "uncancel"):  # 3.11+: the cancels were ours
            for _ in range(self.count):
                self.task.uncancel()


async def _body(compiled: CompiledCell, namespace: dict[str, Any], guard: _Guard) -> Any:
    __tracebackhide__ = True
    value = None
    for code in (compiled.statements, compiled.last_expr):
        if code is not None:
            value = await _Stepped(code, namespace, guard)
    return value


class _Stepped:
    """Awaiting it runs ``code`` (a coroutine if it awaits), each step of it under the alarm."""

    __slots__ = ("code", "guard", "namespace")

    def __init__(self, code: Any, namespace: dict[str, Any], guard: _Guard) -> None:
        self.code, self.namespace, self.guard = code, namespace, guard

    def __await__(self) -> Generator[Any, Any, Any]:
        __tracebackhide__ = True
        coro: Coroutine[Any, Any, Any] | None = None
        sent, thrown = None, None
        while True:
            deadline = None
            try:
                with _alarm.limited(self.guard.left(), self.guard.options.mode,
                                    self.guard.options.grace) as deadline:
                    if coro is None:
                        result = eval(self.code, self.namespace)  # a coroutine, not yet started, if it awaits
                        if not self.code.co_flags & inspect.CO_COROUTINE:
                            return result
                        coro = result
                    yielded = coro.send(sent) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                return done.value
            except CellTimeoutError as err:
                if deadline is None or not deadline.fired:
                    raise  # a limit of the cell's own code (nbtimeout.timeout) that it did not catch
                # The step's alarm had what was left of the cell's limit: name the cell's limit.
                raise self.guard.timeout().with_traceback(err.__traceback__) from None
            finally:
                if deadline is not None:
                    self.guard.fired |= deadline.fired
            if self.guard.fired:
                # Past the limit the cell waits no more: each await it reaches is cancelled at once,
                # so a bare except: around an await cannot keep it alive.
                if hasattr(yielded, "cancel"):
                    yielded.cancel()
                sent, thrown = None, asyncio.CancelledError()
                continue
            try:
                sent, thrown = (yield yielded), None
            except BaseException as err:  # the cancel at the deadline, or ■: into the cell's code
                sent, thrown = None, err
