from __future__ import annotations

import asyncio
import gc

import pytest
from kernelclient import Kernel


@pytest.fixture(scope="module")
def kernel():
    """A kernel shared by a module's tests, with nbtimeout loaded."""
    k = Kernel()
    assert k.run("%load_ext nbtimeout").status == "ok"
    yield k
    k.shutdown()


@pytest.fixture
def fresh_kernel():
    """A kernel of the test's own, nbtimeout not loaded."""
    k = Kernel()
    yield k
    k.shutdown()


@pytest.fixture(autouse=True)
def _close_dropped_event_loops():
    """Close event loops that jupyter_client's sync calls made and then dropped unclosed.

    jupyter_client runs each sync call on a per-thread loop it never closes; one left behind (by
    ``asyncio.run`` replacing it, or a thread that ended) is collected at an arbitrary later moment,
    and its ResourceWarning, an error here, then fails whatever test is running, even inside
    ``compile()`` (CPython 3.11: "AST constructor recursion depth mismatch"). nbtimeout opens no
    event loop of its own, so this hides nothing of ours.
    """
    yield
    # The loop set for this thread, without making one (get_event_loop() makes one on 3.10-3.11, warns
    # on 3.12-3.13, raises on 3.14; a loop made here would itself be dropped by the next test).
    current = getattr(getattr(asyncio.get_event_loop_policy(), "_local", None), "_loop", None)
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and obj is not current \
                and not obj.is_running() and not obj.is_closed():
            try:
                obj.close()
            except ValueError:  # its selector's descriptor was closed under it: nothing left to close
                pass
