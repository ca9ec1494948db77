"""Compile a cell body the way IPython's ``%%time`` does, keeping ``Out[n]`` and real tracebacks."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from types import CodeType, SimpleNamespace
from typing import Any

from .._where import current_cell


@dataclass(frozen=True)
class CompiledCell:
    """A cell body ready to run: statements, then the trailing expression whose value is returned."""

    filename: str
    statements: CodeType | None
    last_expr: CodeType | None
    last_line: int | None = None  # where the body's last statement starts (a stop after it points there)

    def run(self, namespace: dict[str, Any]) -> Any:
        """Run in ``namespace``; the value of the trailing expression, or None."""
        __tracebackhide__ = True
        if self.statements is not None:
            exec(self.statements, namespace)
        return None if self.last_expr is None else eval(self.last_expr, namespace)


def compile_cell(shell: Any, magic_line: str, body: str, typed: bool = True) -> CompiledCell:
    """Transform and compile ``body``; SyntaxError as IPython would raise it.

    The source is registered with IPython's compiler cache under this cell's number, with the
    magic line first when the user ``typed`` it, so tracebacks say ``Cell In[n], line k`` with the
    notebook's line numbers.
    """
    transformed = shell.transform_cell(body)
    # The every-cell limit (%timeout 30) adds the magic line; then the user's cell starts with the body.
    header = f"%%timeout {magic_line}\n" if typed else ""
    filename = shell.compile.cache(header + transformed, current_cell(shell), raw_code=header + body)
    tree = shell.compile.ast_parse("\n" * bool(header) + transformed, filename=filename)
    tree = shell.transform_ast(tree)
    last_line = tree.body[-1].lineno if tree.body else None
    last = None
    # A trailing ';' hides the value, as IPython's display hook decides for a cell (it looks at the
    # magic's line, which never ends in one): the expression then runs as a statement.
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not _quiet(shell, transformed):
        last = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
    statements = shell.compile(tree, filename, "exec") if tree.body else None
    return CompiledCell(filename, statements, last, last_line)


def _quiet(shell: Any, source: str) -> bool:
    """Whether IPython would not show the value of ``source`` (Python): it ends with ``;``."""
    ends_quiet = getattr(shell.displayhook, "semicolon_at_end_of_expression", None)
    if ends_quiet is None:  # an older IPython's quiet() reads the last cell parsed off the history
        history = SimpleNamespace(history_manager=SimpleNamespace(input_hist_parsed=[source]))
        ends_quiet = lambda _: type(shell.displayhook).quiet(SimpleNamespace(shell=history))  # noqa: E731
    try:
        return bool(ends_quiet(source))
    except (SyntaxError, ValueError):  # tokenize's errors (it compiled, so this is unexpected)
        return False

