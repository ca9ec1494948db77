"""``%%timeout`` / ``%timeout``: the magics, their settings (traitlets) and the every-cell limit."""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
import weakref
from collections.abc import Generator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, TraitError, Unicode, validate

from .._errors import CellCrashedError, CellTimeoutError, EngineUnavailableError
from .._units import MAX_GRACE
from . import budget as _budget
from . import inkernel as _inkernel
from . import request as _request
from . import shown as _shown
from . import widget as _widget
from .cell import CompiledCell
from .options import EVERY_CELL_FLAG, MODES, OFF, Options, parse, resolve, timeout_arguments, words
from .transform import CellHook


@magics_class
class TimeoutMagics(Magics):
    """Per-cell time limits. Settings: ``%config TimeoutMagics`` or ``c.TimeoutMagics.*``."""

    default_mode = Enum(MODES, "auto", help="Engine when a cell does not name one; 'auto': signal on the "
                        "kernel's main thread, thread elsewhere (subshells, Windows).").tag(config=True)
    every_cell = Unicode(
        "", help="Arguments of a limit on every cell, as %timeout takes them ('30', '2m -m fork'); "
                 "empty for none.").tag(config=True)
    grace = Float(1.0, min=0.0, max=MAX_GRACE, help="On a stop: seconds between SIGTERM and SIGKILL for the "
                                                    "fork child and the processes a cell started.").tag(config=True)
    quiet = Bool(False, help="No live countdown and no '✔ Finished' line; only the banner of a stopped or "
                             "crashed cell.").tag(config=True)
    countdown_after = Float(
        1.0, min=0.0, help="Seconds a timed cell runs before its countdown appears; a cell that ends "
                           "sooner shows none (and sends no message); inf: never.").tag(config=True)
    show_finished = Enum(
        ("typed", "always", "never"), "typed",
        help="Which cells that finished within their limit leave a '✔ Finished in …' line: 'typed' "
             "(cells with their own %%timeout line, not those under the every-cell limit), 'always', "
             "'never'.").tag(config=True)

    def __init__(self, shell: Any, **kwargs: Any) -> None:
        self._parsed: dict[tuple[Any, ...], Options] = {}  # first: config may validate every_cell
        super().__init__(shell, **kwargs)
        # Timed cells in progress on this thread (nested cells and their bodies are not re-wrapped);
        # per thread, as each kernel subshell runs its cells on a thread of its own.
        self._nesting = _budget.Nesting()
        self._budget: _budget.Budget | None = None  # %timeout --budget

    @validate("grace", "countdown_after")
    def _check_number(self, proposal: dict[str, Any]) -> float:
        value = proposal["value"]
        if math.isnan(value):
            raise TraitError(f"TimeoutMagics.{proposal['trait'].name} must be a number of seconds, not nan")
        return value

    @property
    def _depth(self) -> int:
        return self._nesting.depth

    @_depth.setter
    def _depth(self, value: int) -> None:
        self._nesting.depth = value

    @validate("every_cell")
    def _check_every_cell(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"].strip()
        if value:
            try:
                self._options(value)
            except UsageError as err:
                raise TraitError(f"TimeoutMagics.every_cell = {value!r}: {err}") from None
        return value

    def _options(self, line: str) -> Options:
        # A notebook repeats the same few magic lines; argparse costs more than the rest of a cell.
        key = (line, self.default_mode, self.grace, self.quiet)
        options = self._parsed.get(key)
        if options is None:
            options = resolve(parse(self.timeout, line), self.default_mode, self.grace, self.quiet)
            if len(self._parsed) > 256:
                self._parsed.clear()
            self._parsed[key] = options
        return options

    @timeout_arguments
    @line_cell_magic
    def timeout(self, line: str = "", cell: str | None = None) -> Any:
        """Stop a cell that runs longer than a time limit.

        Usage::

          %%timeout 5.01 [-m {auto,signal,thread,fork}] [-c] [-g GRACE] [--memory SIZE] [-q]
          %timeout 30 [options]   limit every following cell (a %%timeout cell keeps its own)
          %timeout --budget 10m   a budget for the rest of the notebook: caps every later cell's limit
          %timeout off            remove the every-cell limit and the budget
          %timeout                show the current settings

        Past the limit the cell ends with ``CellTimeoutError`` (a ``TimeoutError``), or with ``-c``
        a banner only. The signal and thread engines run the cell in the kernel (``auto`` picks the
        one that works here); the fork engine runs it in a forked child that can always be killed
        and sends its variables back.
        """
        __tracebackhide__ = True
        if cell is None:
            return self._every_cell_magic(line)
        options = self._options(line)
        if options.awaited:  # the cell's code awaits what we return (see transform.py)
            return _inkernel.Awaiting(self._timed_awaited(line, cell, options))
        # Not a generator: the cell's own StopIteration (next(iter([]))) must leave as it is.
        with _Timing(self, line, cell, options) as (options, compiled):
            return self._run(options, compiled)
        return None  # stopped, with -c

    def _timed_awaited(self, line: str, cell: str, options: Options) -> Generator[Any, Any, Any]:
        """The timed run of a cell that awaits; it yields while the cell waits."""
        __tracebackhide__ = True
        with _Timing(self, line, cell, options) as (options, compiled):
            return (yield from self._run(options, compiled).__await__())
        return None  # stopped, with -c

    def _origin(self, options: Options) -> str:
        """The limit as a record names it."""
        if options.budget:
            return "the notebook's budget"
        if options.added:
            return f"%timeout {self.every_cell} for every cell" if self.every_cell else "the notebook's budget"
        return "%%timeout"

    def _shows_finished(self, options: Options) -> bool:
        """Whether this run, if it finishes within its limit, leaves a '✔ Finished' line."""
        return not options.quiet and (self.show_finished == "always" or (
            self.show_finished == "typed" and not options.added))

    def _run(self, options: Options, compiled: Any) -> Any:
        __tracebackhide__ = True
        if self._budget:
            self._budget.check()  # spent: stopped before it starts
        if options.mode == "fork":
            from .._fork.cell import run_cell  # imported on first use: signal-only users skip it

            return run_cell(compiled, self.shell, options)
        if options.awaited:
            return _inkernel.run_awaited(compiled, self.shell, options)
        return _inkernel.run(compiled, self.shell, options)

    def _every_cell_magic(self, line: str) -> None:
        text = line.strip()
        if text == OFF:
            self.every_cell = ""
            self._budget = None
        elif text:
            args = parse(self.timeout, text)
            if args.budget is not None:
                self._budget = _budget.from_args(args)
            else:
                self._options(text)  # a UsageError names what is wrong before anything changes
                self.every_cell = shlex.join(words(text))  # without a comment: the line is added to each cell
        print(self.describe_settings())

    def describe_settings(self) -> str:
        """One line per setting, as ``%timeout`` shows them."""
        every = f"%%timeout {self.every_cell}" if self.every_cell else "off"
        budget = self._budget.describe() if self._budget else "off"
        return (f"every cell: {every}\nbudget: {budget}\ndefault_mode: {self.default_mode}\n"
                f"grace: {self.grace:g} s\nquiet: {self.quiet}")

    def wrap_cell(self, lines: list[str]) -> list[str]:
        """Input transformer: put ``%%timeout <every_cell>`` on top of a cell that has no limit."""
        if self._depth or not "".join(lines).strip():
            return lines
        requested = _request.requested_line(self.shell)  # the cell's own limit, from its metadata
        if not (requested or self.every_cell or self._budget):
            return lines
        first = lines[0].lstrip()
        if first.startswith(("%%timeout", "%timeout")):  # a typed line wins over any metadata
            return lines
        # A budget caps it when the cell runs.
        limit = requested or self.every_cell or self._budget.every_cell_line
        return [f"%%timeout {limit} {EVERY_CELL_FLAG}\n", *lines]


class _Timing:
    """Around the timed run of a cell: its options and compiled body, its countdown and record, the
    budget, and how its error is shown; suppresses a stop with ``-c``. A class, not a generator:
    the cell's own exception passes through untouched (a generator turns a StopIteration into a
    RuntimeError, and contextlib sets ``__traceback__``, which a class may refuse)."""

    def __init__(self, magics: TimeoutMagics, line: str, cell: str, options: Options) -> None:
        self.magics, self.line, self.cell, self.options = magics, line, cell, options
        self.countdown: Any = None

    def __enter__(self) -> tuple[Options, CompiledCell]:
        __tracebackhide__ = True
        magics = self.magics
        magics._depth += 1
        self.outermost = magics._depth == 1
        self.started, self.budget = time.monotonic(), magics._budget
        if self.budget:
            self.budget.begin()  # overlapping cells (subshells) are charged once
        try:
            # A SyntaxError, or an engine that cannot run here, shows no countdown.
            options, compiled = _inkernel.prepare(magics.shell, self.line, self.cell, self.options)
            options = self.budget.cap(options) if self.budget else options
            self.options, self.compiled = dataclasses.replace(options, origin=magics._origin(options)), compiled
            # The countdown shows the banner of a stopped or crashed cell, and the record of a finished one.
            self.countdown = _widget.countdown(self.options, magics.shell, magics.countdown_after,
                                               magics._shows_finished(self.options))
            self.countdown.__enter__()
        except BaseException as err:
            self._ended()
            if isinstance(err, EngineUnavailableError):
                raise UsageError(f"%%timeout: {err}") from None
            raise
        return self.options, compiled

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        __tracebackhide__ = True
        try:
            if error is not None:
                _shown.place_stop(error, self.compiled.filename, self.compiled.last_line, self.magics.shell.user_ns)
                if self.outermost:  # the cell's own error: shown from the user's first frame
                    _shown.show_as_typed(error, self.compiled.filename, self.magics.shell)
            self.countdown.__exit__(kind, error, tb)
            if isinstance(error, (CellTimeoutError, CellCrashedError)) and self.budget:
                self.budget.explain(error, self.options)
            if isinstance(error, EngineUnavailableError):
                raise UsageError(f"%%timeout: {error}") from None
            return isinstance(error, CellTimeoutError) and self.options.keep_going
        finally:
            self._ended()

    def _ended(self) -> None:
        magics = self.magics
        magics._depth -= 1
        if self.budget:
            self.budget.end()


# What ``unload`` took away, kept for a ``load`` in the same cell: %reload_ext keeps the every-cell
# limit and the budget (with what it has used); %unload_ext, then %load_ext later, starts afresh.
_unloaded: weakref.WeakKeyDictionary[Any, tuple[int, str, _budget.Budget | None]] = weakref.WeakKeyDictionary()


def load(shell: Any) -> None:
    """Register the magics and the every-cell transformer (idempotent)."""
    if _find(shell) is not None:
        return
    try:
        magics = TimeoutMagics(shell)
    except TraitError:
        _drop_bad_settings(shell)  # a bad %config value must not keep the extension from loading
        magics = TimeoutMagics(shell)
    count, every_cell, budget = _unloaded.pop(shell, (None, "", None))
    if count == getattr(shell, "execution_count", None):
        magics.every_cell, magics._budget = every_cell or magics.every_cell, budget
    shell.register_magics(magics)
    shell.input_transformers_cleanup.append(CellHook(magics))


def _drop_bad_settings(shell: Any) -> None:
    """Remove the TimeoutMagics settings that are refused from the shell's config, saying which."""
    section = shell.config.get(TimeoutMagics.__name__, {})
    probe = TimeoutMagics(None)
    for name in list(section):
        try:
            setattr(probe, name, section[name])
        except (TraitError, AttributeError) as err:
            print(f"nbtimeout: ignoring TimeoutMagics.{name} = {section[name]!r}: {err}", file=sys.stderr)
            del section[name]


def unload(shell: Any) -> None:
    """Remove everything ``load`` added."""
    magics = _find(shell)
    if magics is None:
        return
    _unloaded[shell] = (getattr(shell, "execution_count", None), magics.every_cell, magics._budget)
    shell.input_transformers_cleanup[:] = [t for t in shell.input_transformers_cleanup
                                           if getattr(t, "magics", None) is not magics]
    for kind in ("line", "cell"):
        shell.magics_manager.magics[kind].pop("timeout", None)
    shell.magics_manager.registry.pop(type(magics).__name__, None)
    if magics in shell.configurables:
        shell.configurables.remove(magics)


def _find(shell: Any) -> TimeoutMagics | None:
    found = shell.magics_manager.registry.get(TimeoutMagics.__name__)
    return found if isinstance(found, TimeoutMagics) else None
