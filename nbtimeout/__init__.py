"""Per-cell time limits for Jupyter: ``%load_ext nbtimeout``, then ``%%timeout 5.01`` on a cell."""

from __future__ import annotations

from typing import Any

from ._api import timeout
from ._errors import CellCrashedError, CellResultError, CellTimeoutError, EngineUnavailableError
from ._palette import COLOURS

__version__ = "0.1.0"
__all__ = ["COLOURS", "CellCrashedError", "CellResultError", "CellTimeoutError", "EngineUnavailableError",
           "__version__", "map", "timeout"]


def map(fn: Any, items: Any, timeout: Any = 5.01, workers: int | None = None,
        max_tasks_per_worker: int | None = None, *, executor: Any = None, grace: Any = 1.0,
        memory: Any = None) -> Any:
    """``fn(item)`` for each item, each call with its own time limit, on forked workers or on
    ``executor`` (a ``distributed.Client`` or a ``concurrent.futures.Executor``).

    Returns ``Results``, one ``Outcome`` per item in input order; see ``nbtimeout._map.api.map``.
    """
    from ._map.api import map as pool_map  # imported on first use: ``import nbtimeout`` stays light

    return pool_map(fn, items, timeout, workers, max_tasks_per_worker, executor=executor, grace=grace,
                    memory=memory)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext nbtimeout``: register ``%%timeout`` and ``%timeout``."""
    from ._notebook.magic import load  # IPython-only code is imported only when a shell loads us

    load(shell)


def unload_ipython_extension(shell: Any) -> None:
    """``%unload_ext nbtimeout``: remove the magics, the every-cell hook and the settings."""
    from ._notebook.magic import unload

    unload(shell)
