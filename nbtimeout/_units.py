"""Parse and format durations ("5.01", "500ms", "1.5m") and sizes ("512MB", "2GB")."""

from __future__ import annotations

import math
import re

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity))"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>ms|s|sec|m|min|h)?\s*$", re.IGNORECASE)
_SIZE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[kmgt]i?b?|b)?\s*$", re.IGNORECASE)

_SECONDS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_BYTES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

DURATION_HELP = "a positive number of seconds (5.01) or a number with a unit: 500ms, 2s, 1.5m, 1h"
SIZE_HELP = "a positive size with a unit: 512MB, 2GB (powers of 1024)"


def _positive(text: str, match: re.Match[str] | None, what: str, help_text: str) -> tuple[float, str]:
    if match is None:
        raise ValueError(f"{what} {text!r} is not {help_text}")
    value = float(match["num"])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} {text!r} must be finite and greater than zero: {help_text}")
    return value, (match["unit"] or "").lower()


def parse_duration(text: str | float, what: str = "limit") -> float:
    """Seconds in ``text``; ValueError naming ``what`` when it is not a positive duration."""
    if type(text) in (int, float) and 0 < text < math.inf:  # the common case, without a regex
        return float(text)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    value, unit = _positive(str(text), _DURATION.match(str(text)), what, DURATION_HELP)
    return value * _SECONDS[unit or "s"]


def parse_size(text: str | int, what: str = "memory") -> int:
    """Bytes in ``text``; a bare number counts bytes. ValueError naming ``what`` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    value, unit = _positive(str(text), _SIZE.match(str(text)), what, SIZE_HELP)
    return int(value * _BYTES[unit[:1] or "b"])


def format_duration(seconds: float) -> str:
    """A short human form: ``250 ms``, ``5.01 s``, ``2 min 5 s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def format_size(nbytes: int) -> str:
    """A short human form in powers of 1024: ``512 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.4g} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    raise AssertionError("unreachable")
