"""Limits a notebook carries, in one meaning for the kernel and every client.

A notebook declares them in its metadata (``docs/runner.md``):

- a cell's ``metadata.execution.timeout`` (a duration string, ``"30"`` or ``"30s"``: nbformat requires
  strings there; a number is read too, never written) or a cell tag ``timeout=30s``;
- the notebook's ``metadata.execution.timeout`` (every cell's default) and ``metadata.execution.budget``;
- nbtimeout's own options under ``metadata.nbtimeout`` of a cell or of the notebook: ``mode``,
  ``grace``, ``continue``, ``memory``.

The nearer wins: a ``%%timeout`` line in the cell, then the cell's metadata, then the notebook's. A
client sends the result with the cell's execute request, under ``metadata["nbtimeout"]`` (``SPEC_KEY``),
as a *spec*: ``{"timeout": "30s", "mode": "fork", "grace": "1", "continue": true, "memory": "1GB"}``.
The kernel turns the spec into a ``%%timeout`` line of its own, so the source stays as typed.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from ._errors import MIN_LIMIT, MODES
from ._units import parse_duration, parse_size

SPEC_KEY = "nbtimeout"  # in an execute request's metadata
OPTIONS = ("mode", "grace", "continue", "memory")  # under metadata.nbtimeout, beside the limit
TAG_PREFIX = "timeout="


class LimitError(ValueError):
    """A limit in a notebook's metadata that cannot be used; the message names the cell."""


def notebook_level(metadata: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(spec, budget)`` the notebook's own metadata declares for every cell."""
    execution = metadata.get("execution") or {}
    spec = _options(metadata.get(SPEC_KEY) or {}, "the notebook's metadata.nbtimeout")
    if execution.get("timeout") is not None:
        spec["timeout"] = _duration(execution["timeout"], "the notebook's metadata.execution.timeout")
    budget = execution.get("budget")
    if budget is not None:
        budget = _duration(budget, "the notebook's metadata.execution.budget")
    return spec, budget


def cell_spec(cell: dict[str, Any], index: int, default: dict[str, Any]) -> dict[str, Any] | None:
    """The spec to send with cell ``index`` (the notebook's ``default`` under the cell's own), or None.

    None for a cell that declares no limit and whose notebook declares none. LimitError for a bad one.
    """
    where = f"cell {index}"
    metadata = cell.get("metadata") or {}
    spec = dict(default)
    spec.update(_options(metadata.get(SPEC_KEY) or {}, f"{where}'s metadata.nbtimeout"))
    tagged = [t[len(TAG_PREFIX):] for t in metadata.get("tags") or () if t.startswith(TAG_PREFIX)]
    if len(tagged) > 1:
        raise LimitError(f"{where}: more than one timeout= tag ({', '.join(tagged)})")
    declared = (metadata.get("execution") or {}).get("timeout")
    if declared is not None and tagged and _seconds(declared) != _seconds(tagged[0]):
        raise LimitError(f"{where}: its tag timeout={tagged[0]} and its metadata.execution.timeout "
                         f"{declared!r} disagree")
    if tagged:
        spec["timeout"] = _duration(tagged[0], f"{where}'s tag timeout=")
    if declared is not None:
        spec["timeout"] = _duration(declared, f"{where}'s metadata.execution.timeout")
    if "timeout" not in spec:
        if len(spec) > len(default):  # options with no limit to apply them to
            raise LimitError(f"{where}: metadata.nbtimeout sets {', '.join(sorted(spec))} but no limit: "
                             "add metadata.execution.timeout")
        return None
    return spec


def magic_line(spec: dict[str, Any]) -> str:
    """The ``%%timeout`` arguments a spec stands for (``30s -m fork -c``)."""
    words = [str(spec["timeout"])]
    if spec.get("mode"):
        words += ["-m", spec["mode"]]
    if spec.get("grace") is not None:
        words += ["-g", str(spec["grace"])]
    if spec.get("memory") is not None:
        words += ["--memory", str(spec["memory"])]
    if spec.get("continue"):
        words.append("-c")
    return shlex.join(words)


def _options(section: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise LimitError(f"{where} must be a mapping, not {type(section).__name__}")
    unknown = sorted(set(section) - set(OPTIONS) - {"status"})  # status: what a run recorded
    if unknown:
        raise LimitError(f"{where}: unknown option {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    spec: dict[str, Any] = {}
    if section.get("mode") is not None:
        if section["mode"] not in MODES:
            raise LimitError(f"{where}: mode {section['mode']!r} is not one of {', '.join(MODES)}")
        spec["mode"] = section["mode"]
    if section.get("grace") is not None:
        grace = section["grace"]
        if not (isinstance(grace, (int, float)) and grace == 0):
            _duration(grace, f"{where}: grace")
        spec["grace"] = str(grace)
    if section.get("memory") is not None:
        try:
            parse_size(section["memory"], "memory")
        except ValueError as err:
            raise LimitError(f"{where}: {err}") from None
        spec["memory"] = str(section["memory"])
    if section.get("continue") is not None:
        if not isinstance(section["continue"], bool):
            raise LimitError(f"{where}: continue must be true or false, not {section['continue']!r}")
        spec["continue"] = section["continue"]
    return spec


def _duration(value: Any, where: str) -> str:
    """``value`` as a duration string the magic takes; LimitError naming ``where`` if it is not one."""
    seconds = _seconds(value, where)
    if seconds < MIN_LIMIT:
        raise LimitError(f"{where}: {value!r} is shorter than the shortest limit, 1 ms")
    return value.strip() if isinstance(value, str) else repr(value)


def _seconds(value: Any, where: str = "limit") -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise LimitError(f"{where}: {value!r} is not a duration (give a string such as \"30s\")")
    try:
        seconds = parse_duration(value, "limit")
    except ValueError as err:
        raise LimitError(f"{where}: {err}") from None
    if not math.isfinite(seconds):
        raise LimitError(f"{where}: {value!r} is not a finite duration")
    return seconds
