"""What ``nbtimeout.map`` returns: one ``Outcome`` per task, in a ``Results`` list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINISHED, STOPPED, CRASHED, FAILED = "finished", "stopped", "crashed", "failed"


@dataclass(eq=False)
class Outcome:
    """What became of one task.

    ``status`` is ``"finished"`` (``value`` is what ``fn`` returned), ``"stopped"`` (ran past the
    limit: ``error`` is a ``CellTimeoutError``), ``"crashed"`` (the worker died, e.g. a segfault:
    ``error`` is a ``CellCrashedError``) or ``"failed"`` (``fn`` raised: ``error`` is that exception,
    with the worker's traceback). ``elapsed`` is in seconds; ``index`` and ``item`` say which task.
    """

    index: int
    item: Any
    status: str
    value: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    def unwrap(self) -> Any:
        """The value if the task finished, else raise its error."""
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self) -> str:
        what = f"value={self.value!r}" if self.ok else f"error={self.error!r}"
        return f"<Outcome [{self.index}] {self.status} in {self.elapsed * 1000:.0f} ms, {what}>"


class Results(list):
    """One ``Outcome`` per item, in input order (a ``list``), with helpers.

    ``values()`` gives the values of finished tasks, ``unwrap()`` every value or the first error,
    ``raise_first()`` raises the first error (if any), ``counts()`` tallies the statuses.
    """

    def values(self) -> list[Any]:
        """The values of the finished tasks, in input order; the others are left out."""
        return [o.value for o in self if o.ok]

    def errors(self) -> list[Outcome]:
        """The outcomes of tasks that did not finish (stopped, crashed or failed)."""
        return [o for o in self if not o.ok]

    def raise_first(self) -> Results:
        """Raise the error of the first task (in input order) that did not finish; else ``self``."""
        for o in self:
            o.unwrap()
        return self

    def unwrap(self) -> list[Any]:
        """Every value, in input order, or the first error raised."""
        return [o.unwrap() for o in self]

    def counts(self) -> dict[str, int]:
        """``{"finished": n, "stopped": n, "crashed": n, "failed": n}``."""
        tally = dict.fromkeys((FINISHED, STOPPED, CRASHED, FAILED), 0)
        for o in self:
            tally[o.status] += 1
        return tally
