"""The ``nbtimeout`` command: ``nbtimeout run NOTEBOOK`` and ``nbtimeout install-kernel``.

``run`` executes a notebook with nbclient, every limit enforced in the kernel, and always writes the
output notebook. Exit status: 0 when every cell finished (or was stopped under ``--continue``), 1 when
a cell failed, was stopped or crashed, 2 for bad usage (a bad limit in the notebook included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._errors import MODES
from .._limits import LimitError
from .._units import DURATION_HELP

USAGE_ERROR, CELL_ERROR = 2, 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "install-kernel":
        from .kernelspec import install

        try:
            where = install(args.name, args.display_name, args.cell_timeout, args.mode, args.user, args.sys_prefix)
        except ValueError as err:
            parser.error(str(err))
        print(f"installed kernelspec {args.name!r} in {where}")
        return 0
    return _run(parser, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbtimeout", description="Per-cell time limits, enforced in the kernel.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook with its limits; always write the output",
                              description=__doc__.split("\n\n")[1])
    run.add_argument("notebook", type=Path)
    run.add_argument("-o", "--output", type=Path, help="where to write the executed notebook "
                                                       "(default: NOTEBOOK with .out.ipynb)")
    run.add_argument("--cell-timeout", help=f"limit of every cell that declares none: {DURATION_HELP}")
    run.add_argument("--budget", help="the whole notebook's budget of cell time")
    run.add_argument("--mode", choices=MODES, help="engine of every cell that names none")
    run.add_argument("--continue", dest="keep_going", action="store_true",
                     help="a stopped cell is marked and the notebook goes on")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set NAME in the cell tagged 'parameters', as papermill does (needs papermill)")
    run.add_argument("--kernel", help="kernel name (default: the notebook's)")
    run.add_argument("--startup-timeout", type=float, default=60)
    kernel = commands.add_parser("install-kernel", help="a kernelspec that loads nbtimeout with a limit on "
                                                        "every cell, for nbval, nbmake, nbconvert, VS Code")
    kernel.add_argument("--name", default="python3-nbtimeout")
    kernel.add_argument("--display-name", default="Python 3 (time limits)")
    kernel.add_argument("--cell-timeout", help=f"limit of every cell: {DURATION_HELP}")
    kernel.add_argument("--mode", choices=MODES)
    where = kernel.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user")
    where.add_argument("--sys-prefix", action="store_true", help="install into sys.prefix (this environment)")
    return parser


def _run(parser: argparse.ArgumentParser, args: Any) -> int:
    import nbformat

    from .client import KernelWithoutNbtimeoutError, TimeoutClient, plan
    from .progress import Progress

    if not args.notebook.is_file():
        parser.error(f"no notebook at {args.notebook}")
    output = args.output or args.notebook.with_suffix(".out.ipynb")
    try:
        nb = nbformat.read(args.notebook, as_version=4)
    except Exception as err:  # not JSON, not a notebook: one line, as for every bad input
        parser.error(f"{args.notebook}: not a notebook ({type(err).__name__}: {err})")
    if args.parameter:
        nb = _parameterize(parser, nb, args.parameter)
    try:
        specs, budget = plan(nb, args.cell_timeout, args.mode, args.keep_going, args.budget)
    except LimitError as err:
        parser.error(f"{args.notebook}: {err}")
    progress = Progress(nb, sys.stderr)
    kernel = args.kernel or (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    client = TimeoutClient(nb, kernel_name=kernel, startup_timeout=args.startup_timeout,
                           resources={"metadata": {"path": str(args.notebook.parent)}})
    client.limits_setup(specs, budget, progress)
    problem = None
    try:
        client.execute()
    except KernelWithoutNbtimeoutError as err:
        problem = str(err)
    except Exception as err:  # nbclient's CellExecutionError, a dead kernel: the notebook is still written
        problem = None if type(err).__name__ == "CellExecutionError" else f"{type(err).__name__}: {err}"
    finally:
        unrun = client.mark_unrun()
        nbformat.write(nb, output)
    return progress.summary(output, unrun, problem)


def _parameterize(parser: argparse.ArgumentParser, nb: Any, pairs: list[list[str]]) -> Any:
    try:
        from papermill.parameterize import parameterize_notebook
    except ImportError:
        parser.error("-p needs papermill in this environment (pip install papermill)")
    import ast

    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text  # a bare word is a string, as papermill's -p takes it

    nb.metadata.setdefault("papermill", {})  # what papermill's own loader adds before parameterizing
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    return parameterize_notebook(nb, {name: value(text) for name, text in pairs})


def console() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
