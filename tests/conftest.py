from __future__ import annotations

import asyncio
import gc
import warnings

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
    with warnings.catch_warnings():
        # With no loop set, Python 3.12-3.13 make one and warn "There is no current event loop"
        # first: raised, the warning means "none" and nothing is made (3.14 raises RuntimeError,
        # 3.10-3.11 make one silently, as before).
        warnings.simplefilter("error", DeprecationWarning)
        try:
            current = asyncio.get_event_loop()
        except (RuntimeError, DeprecationWarning):
            current = None
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and obj is not current \
                and not obj.is_running() and not obj.is_closed():
            obj.close()
