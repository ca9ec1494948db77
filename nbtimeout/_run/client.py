"""nbclient that carries a notebook's limits to the kernel, and records what each cell came to.

``LimitsMixin`` goes in front of any ``nbclient.NotebookClient`` (nbtimeout's own ``TimeoutClient``,
papermill's ``PapermillNotebookClient``): it loads nbtimeout into the kernel without the notebook
asking, sends every cell's limit with its execute request (``nbtimeout._limits``), keeps the cell's
``metadata.execution.timeout`` (nbclient's timing record would wipe it), and afterwards marks each
code cell's outcome under ``metadata.nbtimeout.status``: finished, stopped, crashed, failed, not run.
"""

from __future__ import annotations

import time
from typing import Any

from nbclient import NotebookClient

from .._limits import SPEC_KEY, LimitError, cell_spec, notebook_level
from .request import execute

# What a cell's outputs say it came to (nbtimeout's own errors, then any other).
_STOPPED = {"CellTimeoutError", "BudgetSpentError"}
_CRASHED = {"CellCrashedError"}
NOT_RUN = "not run"


class KernelWithoutNbtimeoutError(RuntimeError):
    """The kernel could not load nbtimeout: it is not installed in the kernel's environment."""


def plan(nb: Any, cell_timeout: str | None = None, mode: str | None = None, keep_going: bool = False,
         budget: str | None = None) -> tuple[dict[int, dict[str, Any]], str | None]:
    """``({cell index: spec}, budget)`` for ``nb``; the arguments are the runner's defaults.

    ``budget`` is the argument line of ``%timeout --budget`` (``"10m -c"``), or None.

    The notebook's metadata wins over these defaults and a cell's over the notebook's. LimitError
    naming the cell for the first bad value, before anything runs.
    """
    default, declared_budget = notebook_level(nb.get("metadata") or {})
    given = {"timeout": cell_timeout, "mode": mode, "continue": keep_going or None}
    default = {**{k: v for k, v in given.items() if v is not None}, **default}
    specs = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            spec = cell_spec(cell, index, default)
            if spec is not None:
                specs[index] = spec
    budget = declared_budget or budget
    if budget and default.get("continue"):
        budget += " -c"
    return specs, budget


class _SendsLimits:
    """The kernel client, whose ``execute`` sends the current cell's spec with the request."""

    def __init__(self, client: Any, runner: LimitsMixin) -> None:
        self._client, self._runner = client, runner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def execute(self, code: str, **content: Any) -> str:
        return execute(self._client, code, self._runner.current_spec, **content)


class LimitsMixin:
    """See the module's docstring. Set ``specs`` and ``budget`` (from ``plan``) before executing."""

    specs: dict[int, dict[str, Any]]
    budget: str | None
    current_spec: dict[str, Any] | None = None

    def limits_setup(self, specs: dict[int, dict[str, Any]], budget: str | None, progress: Any = None) -> None:
        self.specs, self.budget, self.progress = specs, budget, progress
        self.ran: set[int] = set()

    async def async_start_new_kernel_client(self) -> Any:
        client = await super().async_start_new_kernel_client()  # type: ignore[misc]
        load = "%load_ext nbtimeout"
        if self.budget:
            load += f"\n%timeout --budget {self.budget}"
        msg_id = client.execute(load, silent=True, store_history=False)
        reply = await self.async_wait_for_reply(msg_id)  # type: ignore[attr-defined]
        if (reply or {}).get("content", {}).get("status") != "ok":
            raise KernelWithoutNbtimeoutError("the kernel could not load nbtimeout: install it into the "
                                         "kernel's environment (pip install nbtimeout)")
        self.kc = _SendsLimits(client, self)
        return self.kc

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self.current_spec = self.specs.get(cell_index)
        declared = (cell.get("metadata", {}).get("execution") or {}).get("timeout")
        if self.progress is not None and cell.cell_type == "code" and cell.source.strip():
            self.progress.started(cell_index, self.current_spec)
        started = time.monotonic()
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)  # type: ignore[misc]
        finally:
            if declared is not None:  # nbclient's record_timing replaced metadata.execution
                cell.setdefault("metadata", {}).setdefault("execution", {})["timeout"] = declared
            if cell.cell_type == "code" and cell.source.strip():
                self.ran.add(cell_index)
                mark(cell, outcome(cell))
                if self.progress is not None:
                    self.progress.ended(cell_index, outcome(cell), time.monotonic() - started)

    def mark_unrun(self) -> list[int]:
        """Clear the outputs of code cells that never ran (stale ones from an earlier run); their indices."""
        unrun = []
        for index, cell in enumerate(self.nb.cells):  # type: ignore[attr-defined]
            if cell.cell_type == "code" and cell.source.strip() and index not in self.ran:
                cell.outputs, cell.execution_count = [], None
                mark(cell, NOT_RUN)
                unrun.append(index)
        return unrun


def outcome(cell: Any) -> str:
    """What a code cell's outputs say it came to: finished, stopped, crashed or failed."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            name = output.get("ename")
            return "stopped" if name in _STOPPED else "crashed" if name in _CRASHED else "failed"
    for output in cell.get("outputs", []):
        html = str((output.get("data") or {}).get("text/html", ""))
        if 'data-nbtimeout="continued"' in html:  # stopped under --continue: no error output
            return "stopped"
    return "finished"


def mark(cell: Any, status: str) -> None:
    cell.setdefault("metadata", {}).setdefault(SPEC_KEY, {})["status"] = status


class TimeoutClient(LimitsMixin, NotebookClient):
    """``nbclient.NotebookClient`` with the notebook's limits enforced in the kernel."""


__all__ = ["NOT_RUN", "KernelWithoutNbtimeoutError", "LimitError", "LimitsMixin", "TimeoutClient", "outcome", "plan"]
