"""Where stopped code was: the child's stack dump on SIGTERM, kept when user code takes SIGTERM.

The child registers faulthandler on SIGTERM (dump, then chain to the previous disposition). A
cell that installs its own SIGTERM handler (a server's graceful shutdown, a library's cleanup)
would replace faulthandler's and the stop would say nothing about where the cell was. So in the
child, ``_signal.signal`` (which ``signal.signal`` calls, also through references imported
earlier) re-registers faulthandler on top of the new handler: the stack is dumped first, then the
user's handler runs as it would have. A handler installed from C (``sigaction``) is not seen:
then the stop says that the child gave no stack (see ``fallback_frames``).
"""

from __future__ import annotations

import faulthandler
import functools
import signal
import sys
from typing import Any

from .._where import PACKAGE_DIR, Frames, cell_number


def dump_on_sigterm(fd: int) -> None:  # pragma: no cover - runs in the child
    """Dump the stack to ``fd`` on SIGTERM, then do what SIGTERM's handler says; keep it so."""
    import _signal

    faulthandler.register(signal.SIGTERM, file=fd, all_threads=False, chain=True)
    original = _signal.signal

    @functools.wraps(original)
    def install(signalnum: int, handler: Any) -> Any:
        if signalnum != signal.SIGTERM:
            return original(signalnum, handler)
        faulthandler.unregister(signal.SIGTERM)  # puts back what faulthandler found
        try:
            return original(signalnum, handler)  # may refuse (not the main thread): as without us
        finally:
            faulthandler.register(signal.SIGTERM, file=fd, all_threads=False, chain=True)  # chains to it

    _signal.signal = install


def fallback_frames() -> Frames:
    """The kernel-side line that started the work (a cell's magic line, a call of a forked
    function), as the frame to show when the child's stack is unknown."""
    frame: Any = sys._getframe(1)
    outside = None
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE_DIR):
            if cell_number(code.co_filename) is not None:
                return [(code.co_filename, frame.f_lineno, code.co_name)]
            outside = outside or (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return [outside] if outside else []
