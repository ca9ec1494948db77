"""Per-cell time limits for Jupyter: ``%load_ext nbtimeout``, then ``%%timeout 5.01`` on a cell."""

from __future__ import annotations

from typing import Any

from ._api import timeout
from ._errors import CellCrashedError, CellTimeoutError, EngineUnavailableError

__version__ = "0.1.0"
__all__ = ["CellCrashedError", "CellTimeoutError", "EngineUnavailableError", "__version__", "timeout"]


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext nbtimeout``: register ``%%timeout`` and ``%timeout``."""
    from ._magic import load  # IPython-only code is imported only when a shell loads us

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext nbtimeout``: remove the magics, the every-cell hook and the settings."""
    from ._magic import unload

    unload(shell)
