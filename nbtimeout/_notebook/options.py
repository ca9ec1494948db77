"""The ``%%timeout`` argument parser and the resolved options of one timed run."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._errors import MIN_LIMIT, MODES, TOO_SHORT
from .._units import DURATION_HELP, MAX_GRACE, SIZE_HELP, UNITS, parse_duration, parse_size

F = TypeVar("F", bound=Callable[..., Any])
OFF = "off"
EVERY_CELL_FLAG = "--every-cell"
AWAITED_FLAG = "--awaited"
MAX_MEMORY = 1 << 60  # 1 EiB: beyond any machine, and far inside what RLIMIT_AS can hold
# A grace of zero (SIGKILL at once) is allowed, as in the grace setting; a limit of zero is not.
_ZERO = re.compile(r"^\s*\+?(0+(\.0*)?|\.0+)\s*(ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SIZE_UNIT = re.compile(r"^[kmgt]i?b?$|^b$", re.IGNORECASE)
_LONG = {"-m": "--mode", "-g": "--grace", "--mode": "--mode", "--grace": "--grace", "--memory": "--memory",
         "--budget": "--budget"}  # the options that take a value


_ARGUMENTS = [  # top to bottom as in the help
    argument("limit", nargs="?", help=f"the time limit: {DURATION_HELP}; 'off' (line magic) removes it"),
    argument("-m", "--mode", choices=MODES, help="engine: auto (default: signal on the kernel's main thread, "
                                                 "thread elsewhere), signal, thread (both in the kernel) or fork "
                                                 "(in a child)"),
    argument("-c", "--continue", dest="keep_going", action="store_true",
             help="on timeout, mark the cell stopped but do not raise, so Run All goes on"),
    argument("-g", "--grace", help="on a stop, seconds between SIGTERM and SIGKILL for the fork child and "
                                   "the processes the cell started; 0 kills at once (default 1s)"),
    argument("--memory", help=f"fork mode: memory the cell may allocate beyond the kernel's: {SIZE_HELP}"),
    argument("-q", "--quiet", action="store_true",
             help="no live countdown and no '✔ Finished' line; only the banner of a stopped or crashed cell"),
    argument("--budget", help=f"line magic only: a time budget for the rest of the notebook: {DURATION_HELP}; "
                              "each later cell's limit is capped by what is left"),
    # Marks the line the every-cell limit adds, so tracebacks keep the user's own line numbers.
    argument(EVERY_CELL_FLAG, dest="added", action="store_true", help=argparse.SUPPRESS),
    # Marks a cell whose body awaits at top level: its code awaits the magic (see transform.py).
    argument(AWAITED_FLAG, dest="awaited", action="store_true", help=argparse.SUPPRESS),
]


def timeout_arguments(func: F) -> F:
    """Declare the ``%%timeout`` arguments on ``func`` (its docstring gains their help)."""
    for declare in reversed(_ARGUMENTS):
        func = declare(func)
    return magic_arguments()(func)


@dataclass(frozen=True)
class Options:
    """Everything one timed run needs to know."""

    limit: float
    mode: str = "signal"
    keep_going: bool = False
    grace: float = 1.0
    memory: int | None = None
    quiet: bool = False
    added: bool = False  # the magic line was put there by the every-cell limit, not typed
    awaited: bool = False  # the body awaits at top level and the cell's code awaits the magic
    budget: float | None = None  # the notebook's budget (%timeout --budget), when it capped ``limit``
    origin: str = "%%timeout"  # the limit as the record names it: "%timeout 30 for every cell"


def parse(magic: Callable[..., object], line: str) -> Any:
    """argparse's namespace for ``line``; UsageError for unknown options or extra words.

    As a person writes it: a ``# comment`` ends the line, a unit may stand apart from its number
    (``5 s``, ``--memory 2 GB``) and an option's value may start with ``-`` (``--memory -1GB``
    is then refused for its value, not as a missing argument)."""
    try:
        return parse_argstring(magic, shlex.join(_joined(words(line))))
    except UsageError as err:
        raise UsageError(f"%%timeout: {err}") from None


def words(line: str) -> list[str]:
    """The words of a magic line, as the shell splits them, without a trailing ``# comment``."""
    try:
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        return list(lexer)
    except ValueError as err:
        raise UsageError(f"%%timeout: {err}") from None


def _joined(words: list[str]) -> list[str]:
    """``words`` with each unit joined to its number and each option's value joined to it by ``=``."""
    out: list[str] = []
    for word in words:
        previous = out[-1] if out else ""
        sized = previous.startswith("--memory=") or (len(out) > 1 and out[-2] == "--memory")
        unit = word.lower() in UNITS or (sized and _SIZE_UNIT.match(word))
        if unit and _NUMBER.match(previous.split("=")[-1]):
            out[-1] = previous + word
        elif previous in _LONG and word.startswith("-") and word not in _LONG:
            out[-1] = f"{_LONG[previous]}={word}"
        else:
            out.append(word)
    return out


def resolve(args: Any, default_mode: str, default_grace: float, default_quiet: bool) -> Options:
    """Options from parsed ``args`` and the settings; UsageError saying what is wrong."""
    if getattr(args, "budget", None) is not None:
        raise UsageError("%%timeout: --budget is for the whole notebook: give it alone to the line magic, "
                         "%timeout --budget 10m")
    if args.limit is None:
        raise UsageError("%%timeout: give a time limit, e.g. %%timeout 5.01 (" + DURATION_HELP + ")")
    mode = args.mode or default_mode
    if mode != "fork" and args.memory is not None:
        raise UsageError("%%timeout: --memory works only with --mode fork")
    try:
        limit = parse_duration(args.limit, "limit")
        grace = default_grace if args.grace is None else _grace(args.grace)
        memory = parse_size(args.memory, "--memory") if args.memory is not None else None
    except ValueError as err:
        raise UsageError(f"%%timeout: {err}") from None
    if limit < MIN_LIMIT:
        raise UsageError(TOO_SHORT.format(given=args.limit))
    if memory is not None and memory > MAX_MEMORY:
        raise UsageError(f"%%timeout: --memory {args.memory} is more than any machine has (at most 1 EiB)")
    return Options(limit, mode, args.keep_going, grace, memory, args.quiet or default_quiet, args.added,
                   awaited=args.awaited)


def _grace(text: str) -> float:
    return 0.0 if _ZERO.match(text) else parse_duration(text, "--grace", MAX_GRACE)
