from __future__ import annotations

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
