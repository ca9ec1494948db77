"""``papermill --engine nbtimeout``: papermill's own execution, with limits enforced in the kernel.

Registered in the ``papermill.engine`` entry-point group (the name papermill reads). Each cell's
limit comes from the notebook's metadata (``nbtimeout._limits``); ``--execution-timeout`` becomes the
default limit of every cell,
enforced in the kernel instead of nbclient's client-side timer, so a stopped cell gets papermill's
error banner and status, and the cells after it stay ``pending``.
"""

from __future__ import annotations

from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from .client import LimitsMixin, plan


class _Client(LimitsMixin, PapermillNotebookClient):
    pass


class NbtimeoutEngine(NBClientEngine):
    """papermill's nbclient engine, whose cells carry their limits to the kernel."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                 execution_timeout: float | None = None, **kwargs: Any) -> Any:
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        client = _Client(nb_man, **merge_kwargs(kwargs, startup_timeout=start_timeout, kernel_name=kernel_name,
                                                log=logger, log_output=log_output, stdout_file=stdout_file,
                                                stderr_file=stderr_file))
        specs, budget = plan(nb_man.nb, cell_timeout=str(execution_timeout) if execution_timeout else None)
        client.limits_setup(specs, budget)
        return client.execute()
