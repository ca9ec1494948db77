"""The input transformer nbtimeout adds: the every-cell limit, and ``%%timeout`` cells that await.

It changes what runs, never whether an input is complete: it is marked ``has_side_effects``, so
IPython's ``check_complete`` (``is_complete`` requests, terminal IPython's Enter key) skips it and
answers as if nbtimeout were not loaded.
"""

from __future__ import annotations

import re
from typing import Any

from .inkernel import awaits
from .options import AWAITED_FLAG

# ``exit``, ``quit`` and their calls: IPython's exiter must act in the kernel (or terminal), at once.
_EXIT = re.compile(r"^\s*(?P<name>exit|quit)\s*(\(.*\))?\s*;?\s*$", re.DOTALL)


class CellHook:
    """Called with a cell's lines before IPython turns ``%%magics`` into Python."""

    has_side_effects = True  # IPython's check_complete skips transformers marked so

    def __init__(self, magics: Any) -> None:
        self.magics = magics
        self._checking = False  # while asking IPython whether a body awaits: do nothing

    def __call__(self, lines: list[str]) -> list[str]:
        if self._checking or self.magics._depth or _exits(lines, self.magics.shell):
            return lines
        lines = self.magics.wrap_cell(lines)
        head = lines[0].split(None, 1) if lines else []
        if not head or head[0] != "%%timeout":
            return lines
        return self._awaited(lines)

    def _awaited(self, lines: list[str]) -> list[str]:
        """A ``%%timeout`` cell whose body awaits at top level becomes an await of the magic.

        IPython then runs the cell as a coroutine on the kernel's event loop (as it runs any
        cell that awaits), and the magic returns what that code awaits.
        """
        shell = self.magics.shell
        from IPython.core.async_helpers import _asyncio_runner

        if not getattr(shell, "autoawait", False) or getattr(shell, "loop_runner", None) is not _asyncio_runner:
            return lines
        body = "".join(lines[1:])
        self._checking = True
        try:
            if not awaits(body, shell):
                return lines
        finally:
            self._checking = False
        line = lines[0].rstrip("\n").split(None, 1)[1:]
        magic_line = f"{line[0] if line else ''} {AWAITED_FLAG}"
        return [f"await get_ipython().run_cell_magic('timeout', {magic_line!r}, {body!r})\n"]


def _exits(lines: list[str], shell: Any) -> bool:
    """The cell is ``exit``/``quit`` (called or not) and names IPython's exiter."""
    if len(lines) > 3:
        return False
    match = _EXIT.match("".join(lines))
    if match is None:
        return False
    from IPython.core.autocall import IPyAutocall

    return isinstance(shell.user_ns.get(match["name"]), IPyAutocall)
