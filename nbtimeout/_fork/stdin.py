"""``input()`` and ``getpass()`` in a forked child: the kernel asks on its stdin channel, for it.

In a kernel, both end in ``kernel._input_request``, which talks to the front end over the kernel's
stdin socket. In the child that method is replaced: the prompt travels over the Pipe, the kernel
calls its *own* ``input``/``getpass`` with it (so the front end shows the usual prompt, and a front
end that does not allow stdin gets ``StdinNotImplementedError`` as in the kernel), and the answer,
or the exception, comes back.

Time at the prompt counts against the cell's limit, as it does on the signal engine (SIGALRM
stops a cell waiting at a prompt): where the kernel can arm SIGALRM (its main thread), the prompt
is abandoned at the deadline and the cell is stopped as any other.
"""

from __future__ import annotations

import getpass
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .protocol import INPUT


class PromptExpiredError(Exception):
    """The cell's limit passed while the kernel waited for an answer at the prompt."""


def child_input_request(ask: Callable[[tuple[Any, ...]], Any] | None) -> Callable[..., str]:
    """A ``kernel._input_request`` for the child; ``ask`` sends a message and returns the reply.

    ``ask`` is None where nobody answers (a ``map`` worker): input then fails with the kernel's
    own exception, saying why.
    """

    def input_request(prompt: str, ident: Any = None, parent: Any = None, password: bool = False) -> str:
        if ask is None:
            from IPython.core.error import StdinNotImplementedError

            raise StdinNotImplementedError("input() cannot prompt from an nbtimeout.map task; "
                                           "pass the answer to the task instead")
        ok, answer = ask((INPUT, str(prompt), password))
        if not ok:
            raise answer
        return answer

    return input_request


def answer(prompt: str, password: bool, deadline: float | None) -> tuple[bool, Any]:
    """In the kernel: ``(True, text)`` or ``(False, exception)``; PromptExpiredError past ``deadline``."""
    import builtins

    from .._errors import CellTimeoutError

    ask = getpass.getpass if password else builtins.input
    try:
        if deadline is not None and _can_alarm():
            from .._engines.alarm import limited

            # A with-block right here: the signal engine stops the block of the frame that opened it.
            with limited(max(deadline - time.monotonic(), 1e-3)):
                return True, ask(prompt)
        return True, ask(prompt)
    except CellTimeoutError:
        raise PromptExpiredError() from None
    except Exception as err:  # StdinNotImplementedError, EOFError (^D): the child raises it
        return False, err


def _can_alarm() -> bool:
    """SIGALRM can stop the wait here (the kernel's main thread); elsewhere the prompt has no limit."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
