"""Parse and format durations ("5.01", "500ms", "1.5m") and sizes ("512MB", "2GB")."""

from __future__ import annotations

import math
import re
import threading

_NUMBER = r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity))"
_DURATION = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>ms|s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_SIZE = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[kmgt]i?b?|b)?\s*$", re.IGNORECASE)

_SECONDS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# The longest wait nbtimeout makes: threading's waits (TIMEOUT_MAX) and epoll/poll, whose timeout is
# a C int of milliseconds (about 24.8 days). A limit plus its grace must fit in it.
MAX_WAIT = min(threading.TIMEOUT_MAX, (2**31 - 1) / 1000)
MAX_GRACE = min(86400.0, MAX_WAIT / 10)  # a day between SIGTERM and SIGKILL is more than any cleanup needs
MAX_LIMIT = min(20 * 86400.0, MAX_WAIT - MAX_GRACE)  # 20 days where the platform allows it
UNITS = ("ms", "s", "sec", "m", "min", "h", "d")

DURATION_HELP = "a positive number of seconds (5.01) or a number with a unit: 500ms, 2s, 1.5m, 1h"
SIZE_HELP = "a positive size with a unit: 512MB, 2GB (powers of 1024)"


def _positive(text: str, match: re.Match[str] | None, what: str, help_text: str) -> tuple[float, str]:
    if match is None:
        raise ValueError(f"{what} {text!r} is not {help_text}")
    value = float(match["num"])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} {text!r} must be finite and greater than zero: {help_text}")
    return value, (match["unit"] or "").lower()


def parse_duration(text: str | float, what: str = "limit", most: float = MAX_LIMIT) -> float:
    """Seconds in ``text``; ValueError naming ``what`` when it is not a positive duration of at
    most ``most`` seconds (longer ones cannot be waited for: see MAX_WAIT)."""
    if type(text) in (int, float) and 0 < text <= most:  # the common case, without a regex
        return float(text)
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(text)
    value, unit = _positive(str(text), _DURATION.match(str(text)), what, DURATION_HELP)
    seconds = value * _SECONDS[unit or "s"]
    if seconds > most:
        raise ValueError(f"{what} {text!r} is longer than nbtimeout can wait for: at most {format_duration(most)}")
    return seconds


def parse_size(text: str | int, what: str = "memory") -> int:
    """Bytes in ``text``; a bare number counts bytes. ValueError naming ``what`` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    value, unit = _positive(str(text), _SIZE.match(str(text)), what, SIZE_HELP)
    return int(value * _BYTES[unit[:1] or "b"])


_SCALES = ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s"))


def format_duration(seconds: float) -> str:
    """A short human form: ``250 ms``, ``5.01 s``, ``2 min 5 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds >= 1000 * 86400:  # beyond any limit: a number, not a thousand-digit count of days
        return f"{seconds / 86400:.3g} d"
    for size, unit, small, small_unit in _SCALES:
        count = round(seconds / small)  # rounded to the smaller unit first: 3599.6 s is 1 h, not 60 min
        if count >= size // small:
            big, rest = divmod(count, size // small)
            return f"{big} {unit} {rest} {small_unit}" if rest else f"{big} {unit}"
    raise AssertionError("unreachable")


def format_size(nbytes: int) -> str:
    """A short human form in powers of 1024: ``512 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.4g} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    raise AssertionError("unreachable")
