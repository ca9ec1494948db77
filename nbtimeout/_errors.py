"""The exceptions nbtimeout raises, and every user-facing message, defined once."""

from __future__ import annotations

import signal
from contextvars import ContextVar

from ._units import format_duration

MODES = ("auto", "signal", "thread", "fork")  # as -m/--mode and mode= name them; auto picks signal or thread

# Messages: one place, so the magic, the API and the banner say the same thing.
STOPPED = "ran past its {limit} limit ({engine} engine)"
# A cell's stop arrives within a fraction of a millisecond: a shorter limit could not be honoured,
# only raced against the body (``timeout()`` in code accepts it: there a finish is a fine answer).
NOT_CARRIED = "not everything came back from the fork child (see the warning above)"
# Set by a fork cell whose changes did not all come back, so its record is not a clean "Finished".
not_carried: ContextVar[bool] = ContextVar("nbtimeout_not_carried", default=False)
MIN_LIMIT = 0.001
TOO_SHORT = "%%timeout: {given} is too short to be honoured: give a limit of at least 1 ms"
CRASHED = "the {engine} child {how} after {elapsed}; the kernel is unharmed"
# An in-kernel cell stopped well past its limit: the stop waited for the interpreter.
OVERRAN = ("it overran by {overrun}: the {engine} engine stops a cell only when it runs Python, so C code "
           "(or a bare except: that swallowed the stop) ran on; -m fork stops C code on time")
SIGNAL_TAKEN = ("nbtimeout: signal {old} now has a handler of yours, which stays; nbtimeout's limits use "
                "{new} from now on")
BUDGET_SPENT = "the notebook's {budget} budget is spent: this cell did not run (%timeout off clears the budget)"
BUDGET_RAN_OUT = "the notebook's {budget} budget ran out"
NO_SIGNAL_THREAD = (
    "the signal engine needs the main thread (signals are handled only there); "
    "this code runs on {thread!r}: use mode='thread' (-m thread), or 'auto', which picks it"
)
NO_SIGNAL = ("the signal engine needs signal.pthread_kill and a free signal, which this platform lacks: "
             "use mode='thread' (-m thread), or 'auto', which picks it")
NO_ASYNC_EXC = "the thread engine needs CPython's PyThreadState_SetAsyncExc (ctypes.pythonapi): use mode='fork'"
NO_FORK = "the fork engine needs os.fork, which this platform lacks: use mode='thread' (-m thread), which works here"
STOP_CAUGHT = "■ the time limit stopped this code; the timed cell ends as stopped"
FORK_CONTEXT = "mode='fork' runs a function in a child process: use it as a decorator, not in a with-block"


class CellTimeoutError(TimeoutError):
    """A timed cell or call ran past its limit.

    Attributes: ``limit`` and ``elapsed`` (seconds), ``engine`` (``"signal"``, ``"thread"`` or ``"fork"``),
    ``where`` (``"line 3 in f() of In [5]"`` or ``None``) and, for fork, ``stack`` (the child's
    stack text).
    """

    def __init__(self, limit: float, elapsed: float, engine: str, where: str | None = None,
                 stack: str | None = None) -> None:
        self.limit, self.elapsed, self.engine = limit, elapsed, engine
        self._where, self.stack = where, stack
        # The message names the limit, not the measured time, so it is the same on every run.
        super().__init__(STOPPED.format(limit=format_duration(limit), engine=engine))

    @property
    def where(self) -> str | None:
        """Where the stopped code was; read off the traceback when first asked (not on the abort path)."""
        if self._where is None and self.__traceback__ is not None:
            from ._where import describe_where, frames_of

            self._where = describe_where(frames_of(self.__traceback__))
        return self._where

    def __reduce__(self):
        return type(self), (self.limit, self.elapsed, self.engine, self.where, self.stack)


class CellCrashedError(RuntimeError):
    """The forked child died without reporting back (a signal, ``os._exit``, the OOM killer).

    Attributes: ``signal`` (a name such as ``"SIGSEGV"``, or ``None``), ``exitcode``, ``elapsed``.
    """

    def __init__(self, signum: int | None, exitcode: int | None, elapsed: float,
                 engine: str = "fork") -> None:
        self.signal = signal.Signals(signum).name if signum else None
        self.exitcode, self.elapsed, self.engine = exitcode, elapsed, engine
        if self.signal:
            how = f"was killed by {self.signal}"
        elif exitcode is None:  # the status went to the program's SIGCHLD handling, and it said nothing
            how = "died without an exit status (this program ignores or reaps SIGCHLD)"
        else:
            how = f"exited with code {exitcode}"
        self.how = how
        super().__init__(CRASHED.format(engine=engine, how=how, elapsed=format_duration(elapsed)))

    def __reduce__(self):
        signum = signal.Signals[self.signal].value if self.signal else None
        return type(self), (signum, self.exitcode, self.elapsed, self.engine)


class CellResultError(TypeError):
    """A value or exception the fork child could not carry back"""


class BudgetSpentError(CellTimeoutError):
    """The notebook's time budget (``%timeout --budget``) was spent before this cell could start.

    Attributes as CellTimeoutError (``limit`` and ``elapsed`` are 0), plus ``budget`` and ``used``.
    """

    def __init__(self, budget: float, used: float) -> None:
        super().__init__(0.0, 0.0, "budget")
        self.budget, self.used = budget, used
        # The measured ``used`` stays out of the message, so it reads the same on every run.
        self.args = (BUDGET_SPENT.format(budget=format_duration(budget)),)

    def __reduce__(self):
        return type(self), (self.budget, self.used)


class EngineUnavailableError(RuntimeError):
    """The chosen engine cannot run here (signal: not the main thread or no pthread_kill; fork: no fork)."""


class _Expired(BaseException):
    """Unwinds a timed body; a BaseException so ``except Exception`` cannot swallow it.

    ``args[0]`` is the deadline that fired (no ``__init__`` of ours: this is raised from a signal
    handler, where every Python call adds to the abort latency).
    """

    def _render_traceback_(self) -> list[str]:
        # IPython shows an exception that code such as %run or run_cell caught this way: one line
        # that says what it is, instead of an internal class's traceback.
        from ._where import describe_where, frames_of

        where = describe_where(frames_of(self.__traceback__))
        return [STOP_CAUGHT + (f" (at {where})" if where else "")]
