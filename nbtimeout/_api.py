"""``timeout(...)``: the Python API, a context manager and a decorator over every engine."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ._engines import alarm as _alarm
from ._errors import FORK_CONTEXT, MODES, EngineUnavailableError
from ._units import parse_duration, parse_size

F = TypeVar("F", bound=Callable[..., Any])

NO_GENERATOR = ("timeout() cannot limit a generator function as a whole (its code runs only while "
                "it is iterated): put `with timeout(...):` around the loop that consumes {name}()")
FORK_PLAIN = ("mode='fork' runs a plain function in a child process; {name}() is {what}: "
              "use mode='auto' for it")


class timeout:  # noqa: N801 - used like a function: ``with timeout(0.5):``
    """Limit a block or a function to ``seconds`` (a number or ``"500ms"``, ``"2m"``).

    ``with timeout(0.5): ...``, ``async with timeout(0.5): ...`` and ``@timeout(0.5)`` (also on an
    ``async def``) raise ``CellTimeoutError`` past the limit. ``mode``: ``"auto"`` (the signal
    engine on the main thread, the thread engine on any other), ``"signal"``, ``"thread"``, or
    ``"fork"``, which runs each call of a decorated function in a forked child and returns its
    value. ``grace``: after a stop, seconds that cleanup (``finally:``, ``__exit__``) gets before
    the stop is raised again; fork mode: seconds between SIGTERM and SIGKILL. ``memory``: fork mode.
    """

    def __init__(self, seconds: float | str, mode: str = "auto", *, grace: float | str = 1.0,
                 memory: int | str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"timeout(mode={mode!r}): choose one of {', '.join(MODES)}")
        self.seconds = parse_duration(seconds, "timeout(seconds)")
        self.mode = mode
        self.grace = parse_duration(grace, "timeout(grace)")
        self.memory = None if memory is None else parse_size(memory, "timeout(memory)")
        # Entered blocks, innermost last, each with the frame that entered it: the same object may
        # be entered again, and by coroutines that interleave.
        self._active: list[tuple[Any, _alarm.Deadline]] = []

    def __enter__(self) -> timeout:
        if self.mode == "fork":
            raise EngineUnavailableError(FORK_CONTEXT)
        frame = sys._getframe(1)
        self._active.append((frame, _alarm.arm(self.seconds, self.mode, self.grace, frame)))
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        __tracebackhide__ = True
        deadline = self._active.pop()[1]
        if exc is None:  # the common way out, one call shorter
            _alarm.cancel(deadline)
            return False
        return _alarm.disarm(deadline, exc, tb)

    async def __aenter__(self) -> timeout:
        if self.mode == "fork":
            raise EngineUnavailableError(FORK_CONTEXT)
        frame = sys._getframe(1)  # the coroutine that awaits us
        self._active.append((frame, _alarm.arm(self.seconds, self.mode, self.grace, frame)))
        return self

    async def __aexit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        __tracebackhide__ = True
        frame = sys._getframe(1)
        index = max(i for i, (entered, _) in enumerate(self._active) if entered is frame)
        return _alarm.disarm(self._active.pop(index)[1], exc, tb)

    def __call__(self, func: F) -> F:
        what = ("a generator function" if inspect.isgeneratorfunction(func) else
                "an async generator function" if inspect.isasyncgenfunction(func) else
                "a coroutine function" if inspect.iscoroutinefunction(func) else None)
        name = getattr(func, "__qualname__", repr(func))
        if self.mode == "fork":
            if what is not None:
                raise TypeError(FORK_PLAIN.format(name=name, what=what))
            return self._forked(func)
        if what is not None and what != "a coroutine function":
            raise TypeError(NO_GENERATOR.format(name=name))
        seconds, mode, grace = self.seconds, self.mode, self.grace
        if what is not None:
            @functools.wraps(func)
            @_alarm.calls_user_code
            async def limited_coroutine(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                async with _alarm.limited(seconds, mode, grace):
                    return await func(*args, **kwargs)

            return limited_coroutine  # type: ignore[return-value]

        @functools.wraps(func)
        @_alarm.calls_user_code
        def limited(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with _alarm.limited(seconds, mode, grace):
                return func(*args, **kwargs)

        return limited  # type: ignore[return-value]

    def _forked(self, func: F) -> F:
        from ._fork.engine import run_call

        @functools.wraps(func)
        @_alarm.calls_user_code  # an outer in-kernel limit may stop the wait for the child
        def forked(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            return run_call(functools.partial(func, *args, **kwargs), self.seconds,
                            grace=self.grace, memory=self.memory)

        return forked  # type: ignore[return-value]
