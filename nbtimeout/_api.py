"""``timeout(...)``: the Python API, a context manager and a decorator over both engines."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ._engines import alarm as _alarm
from ._errors import FORK_CONTEXT, MODES, EngineUnavailableError
from ._units import parse_duration, parse_size

F = TypeVar("F", bound=Callable[..., Any])


class timeout:  # noqa: N801 - used like a function: ``with timeout(0.5):``
    """Limit a block or a function to ``seconds`` (a number or ``"500ms"``, ``"2m"``).

    ``with timeout(0.5): ...`` and ``@timeout(0.5)`` use the signal engine and raise
    ``CellTimeoutError`` past the limit. ``@timeout(5, mode="fork")`` runs each call in a forked
    child and returns its value; ``grace`` and ``memory`` apply to fork mode.
    """

    def __init__(self, seconds: float | str, mode: str = "signal", *, grace: float | str = 1.0,
                 memory: int | str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"timeout(mode={mode!r}): choose one of {', '.join(MODES)}")
        self.seconds = parse_duration(seconds, "timeout(seconds)")
        self.mode = mode
        self.grace = parse_duration(grace, "timeout(grace)")
        self.memory = None if memory is None else parse_size(memory, "timeout(memory)")
        self._active: list[_alarm.Deadline] = []  # a stack: the same object may be entered again

    def __enter__(self) -> timeout:
        if self.mode == "fork":
            raise EngineUnavailableError(FORK_CONTEXT)
        self._active.append(_alarm.arm(self.seconds))
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        __tracebackhide__ = True
        if exc is None:  # the common way out, one call shorter
            _alarm.cancel(self._active.pop())
            return False
        return _alarm.disarm(self._active.pop(), exc, tb)

    def __call__(self, func: F) -> F:
        if self.mode == "fork":
            from ._fork.engine import run_call

            @functools.wraps(func)
            def forked(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                return run_call(functools.partial(func, *args, **kwargs), self.seconds,
                                grace=self.grace, memory=self.memory)

            return forked  # type: ignore[return-value]

        @functools.wraps(func)
        @_alarm.calls_user_code
        def limited(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with _alarm.limited(self.seconds):
                return func(*args, **kwargs)

        return limited  # type: ignore[return-value]
