"""``%%timeout`` / ``%timeout``: the magics, their settings (traitlets) and the every-cell limit."""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Enum, Float, TraitError, Unicode, validate

from .._errors import CellCrashedError, CellTimeoutError, EngineUnavailableError
from . import budget as _budget
from . import inkernel as _inkernel
from . import widget as _widget
from .options import EVERY_CELL_FLAG, MODES, OFF, Options, parse, resolve, timeout_arguments
from .transform import CellHook


@magics_class
class TimeoutMagics(Magics):
    """Per-cell time limits. Settings: ``%config TimeoutMagics`` or ``c.TimeoutMagics.*``."""

    default_mode = Enum(MODES, "auto", help="Engine when a cell does not name one; 'auto': signal on the "
                        "kernel's main thread, thread elsewhere (subshells, Windows).").tag(config=True)
    every_cell = Unicode(
        "", help="Arguments of a limit on every cell, as %timeout takes them ('30', '2m -m fork'); "
                 "empty for none.").tag(config=True)
    grace = Float(1.0, min=0.0, help="On a stop: seconds between SIGTERM and SIGKILL for the fork child and "
                                     "the processes a cell started.").tag(config=True)
    quiet = Bool(False, help="No live countdown and no '✔ Finished' line; only the banner of a stopped or "
                             "crashed cell.").tag(config=True)
    countdown_after = Float(
        1.0, min=0.0, help="Seconds a timed cell runs before its countdown appears; a cell that ends "
                           "sooner shows none (and sends no message).").tag(config=True)
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
            return _inkernel.Awaiting(self._timed(line, cell, options))
        return _inkernel.drive(self._timed(line, cell, options))

    def _timed(self, line: str, cell: str, options: Options) -> Generator[Any, Any, Any]:
        """The timed run of a cell; a generator that yields only while a cell that awaits waits."""
        __tracebackhide__ = True
        self._depth += 1
        budget = self._budget
        if budget:
            budget.begin()
        try:
            # A SyntaxError, or an engine that cannot run here, shows no countdown.
            options, compiled = _inkernel.prepare(self.shell, line, cell, options)
            options = budget.cap(options) if budget else options
            # The countdown shows the banner of a stopped or crashed cell, and the record of a finished one.
            with _widget.countdown(options, self.shell, self.countdown_after, self._shows_finished(options)):
                if budget:
                    budget.check()  # spent: stopped before it starts
                value = self._run(options, compiled)
                return (yield from value.__await__()) if options.awaited else value
        except (CellTimeoutError, CellCrashedError) as err:
            if budget:
                budget.explain(err, options)
            if options.keep_going and isinstance(err, CellTimeoutError):
                return None
            raise
        except EngineUnavailableError as err:
            raise UsageError(f"%%timeout: {err}") from None
        finally:
            self._depth -= 1
            if budget:
                budget.end()

    def _shows_finished(self, options: Options) -> bool:
        """Whether this run, if it finishes within its limit, leaves a '✔ Finished' line."""
        return not options.quiet and (self.show_finished == "always" or (
            self.show_finished == "typed" and not options.added))

    def _run(self, options: Options, compiled: Any) -> Any:
        __tracebackhide__ = True
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
                self.every_cell = text
        print(self.describe_settings())

    def describe_settings(self) -> str:
        """One line per setting, as ``%timeout`` shows them."""
        every = f"%%timeout {self.every_cell}" if self.every_cell else "off"
        budget = self._budget.describe() if self._budget else "off"
        return (f"every cell: {every}\nbudget: {budget}\ndefault_mode: {self.default_mode}\n"
                f"grace: {self.grace:g} s\nquiet: {self.quiet}")

    def wrap_cell(self, lines: list[str]) -> list[str]:
        """Input transformer: put ``%%timeout <every_cell>`` on top of a cell that has no limit."""
        if not (self.every_cell or self._budget) or self._depth or not "".join(lines).strip():
            return lines
        first = lines[0].lstrip()
        if first.startswith(("%%timeout", "%timeout")):
            return lines
        limit = self.every_cell or self._budget.every_cell_line  # a budget caps it when the cell runs
        return [f"%%timeout {limit} {EVERY_CELL_FLAG}\n", *lines]


def load(shell: Any) -> None:
    """Register the magics and the every-cell transformer (idempotent)."""
    if _find(shell) is not None:
        return
    try:
        magics = TimeoutMagics(shell)
    except TraitError:
        _drop_bad_settings(shell)  # a bad %config value must not keep the extension from loading
        magics = TimeoutMagics(shell)
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
