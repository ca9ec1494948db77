"""``%timeout --budget 10m``: a time budget for the rest of the notebook.

The budget counts the time cells run (not the time between them, so thinking does not spend it).
Every later cell's limit is capped by what is left; once it is spent, each further cell is stopped
before it starts, with a banner that names the budget, so *Run All* ends (unless ``-c``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from IPython.core.error import UsageError

from .._errors import BUDGET_RAN_OUT, BudgetSpentError, CellTimeoutError
from .._units import format_duration, parse_duration
from .options import Options


class Nesting(threading.local):
    """How many timed cells are in progress on this thread (kernel subshells run on threads of their own)."""

    depth = 0


class Budget:
    """Seconds granted, seconds used, and whether a spent budget stops Run All (not with ``-c``)."""

    def __init__(self, total: float, keep_going: bool = False) -> None:
        self.total, self.keep_going, self.used = total, keep_going, 0.0
        # Timed cells running now, on any thread (nested ones, subshells), and since when: time is
        # charged once while any runs, not once per cell that runs at the same time.
        self._running, self._since = 0, 0.0
        self._lock = threading.Lock()

    @property
    def left(self) -> float:
        return max(self.total - self.used, 0.0)

    @property
    def every_cell_line(self) -> str:
        """The limit the every-cell hook puts on a cell that has none (capped when it runs)."""
        return f"{self.total!r}"

    def cap(self, options: Options) -> Options:
        """``options`` with the limit capped by what is left; a stop that the cap causes is the budget's."""
        if options.limit < self.left:  # its own limit comes first: a stop is its own
            return options
        return dataclasses.replace(options, limit=max(self.left, 1e-3), budget=self.total,
                                   keep_going=options.keep_going or self.keep_going)

    def check(self) -> None:
        """BudgetSpentError when nothing is left: the cell must not start."""
        if self.left <= 0:
            raise BudgetSpentError(self.total, self.used)

    def explain(self, error: BaseException, options: Options) -> None:
        """A stop that the cap caused says so, naming the budget, not a limit that differs per run."""
        if isinstance(error, CellTimeoutError) and options.budget and error.limit == options.limit:
            error.args = (BUDGET_RAN_OUT.format(budget=format_duration(self.total))
                          + f" ({error.engine} engine)",)

    def begin(self) -> None:
        """A timed cell starts (call ``end`` when it ends, whatever happens)."""
        with self._lock:
            if not self._running:
                self._since = time.monotonic()
            self._running += 1

    def end(self) -> None:
        with self._lock:
            self._running -= 1
            if not self._running:
                self.used += time.monotonic() - self._since

    def describe(self) -> str:
        """As ``%timeout`` shows it."""
        flag = " (-c: a spent budget does not stop Run All)" if self.keep_going else ""
        return f"{format_duration(self.left)} left of {format_duration(self.total)}{flag}"


def from_args(args: Any) -> Budget:
    """The Budget that ``%timeout --budget DURATION [-c]`` asks for; UsageError for anything else."""
    others = [flag for flag, value in (("a limit", args.limit), ("-m", args.mode), ("-g", args.grace),
                                       ("--memory", args.memory), ("-q", args.quiet)) if value]
    if others:
        raise UsageError(f"%timeout: --budget takes only a duration and -c, not {', '.join(others)} "
                         "(set an every-cell limit on a line of its own)")
    try:
        total = parse_duration(args.budget, "--budget")
    except ValueError as err:
        raise UsageError(f"%timeout: {err}") from None
    return Budget(total, args.keep_going)
