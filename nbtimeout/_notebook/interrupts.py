"""Noticing ■ during a timed cell without the cell's code seeing a handler of ours.

A timed cell on the main thread chains a SIGINT handler, so ■ is noticed even when code swallows
the KeyboardInterrupt (IPython's ``!cmd`` does). Code in the cell that asks ``signal.getsignal``
(or reads what ``signal.signal`` returns) is answered with the handler it would see without the
limit: the one ours calls. A handler the cell installs itself is kept when the cell ends.
"""

from __future__ import annotations

import functools
import signal
from typing import Any

_getsignal = signal.getsignal
_setsignal = signal.signal


class Watch:
    """Chains a SIGINT handler for one timed cell; ``on_sigint`` is called first at each ■."""

    __slots__ = ("chained", "handler", "on_sigint")

    def __init__(self, on_sigint: Any) -> None:
        self.on_sigint = on_sigint
        self.handler = self._handle  # one bound method: compared by identity below
        _hide()
        self.chained = _setsignal(signal.SIGINT, self.handler)
        _active[self.handler] = self.chained

    def _handle(self, signum: int, frame: Any) -> None:
        self.on_sigint()
        if callable(self.chained):
            self.chained(signum, frame)
        elif self.chained == signal.SIG_DFL:
            raise KeyboardInterrupt

    def close(self) -> None:
        """Put back the handler of before, unless the cell installed one of its own meanwhile."""
        _active.pop(self.handler, None)
        if _getsignal(signal.SIGINT) is self.handler:
            _setsignal(signal.SIGINT, self.chained)


# Our handlers in place now -> the handler each stands for (what the user's code would see).
_active: dict[Any, Any] = {}


def _seen(handler: Any) -> Any:
    try:
        while handler in _active:  # a nested timed cell chains the outer one's
            handler = _active[handler]
    except TypeError:  # an unhashable handler of the user's: not one of ours
        pass
    return handler


@functools.wraps(_getsignal)
def getsignal(signalnum: int) -> Any:
    return _seen(_getsignal(signalnum))


@functools.wraps(_setsignal)
def setsignal(signalnum: int, handler: Any) -> Any:
    return _seen(_setsignal(signalnum, handler))


def _hide() -> None:
    # Once: ``signal.getsignal`` and ``signal.signal`` answer as if no handler of ours were there.
    if signal.getsignal is _getsignal:
        signal.getsignal = getsignal
    if signal.signal is _setsignal:
        signal.signal = setsignal
