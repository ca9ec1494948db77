"""Process-wide settings a setup cell typically changes, read and written by key.

Each setting is read in the child before and after the body; the keys whose value changed are set
again in the kernel. Only libraries the kernel has already imported are looked at.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from typing import Any


def _matplotlib_get() -> dict[str, Any] | None:
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        return None
    return {k: v for k, v in dict.items(matplotlib.rcParams) if k != "backend"}  # the backend: procstate


def _matplotlib_set(key: str, value: Any) -> None:
    sys.modules["matplotlib"].rcParams[key] = value


def _numpy_get() -> dict[str, Any] | None:
    numpy = sys.modules.get("numpy")
    return None if numpy is None else dict(numpy.get_printoptions())


def _numpy_set(key: str, value: Any) -> None:
    sys.modules["numpy"].set_printoptions(**{key: value})


def _pandas_get() -> dict[str, Any] | None:
    pandas = sys.modules.get("pandas")
    if pandas is None:
        return None
    from pandas._config.config import _registered_options

    values = {}
    for key in _registered_options:
        with contextlib.suppress(Exception), warnings.catch_warnings():  # deprecated ones warn or raise
            warnings.simplefilter("ignore")
            values[key] = pandas.get_option(key)
    return values


def _pandas_set(key: str, value: Any) -> None:
    sys.modules["pandas"].set_option(key, value)


def _numpy_errors_get() -> dict[str, Any] | None:
    numpy = sys.modules.get("numpy")
    return None if numpy is None else dict(numpy.geterr())


def _numpy_errors_set(key: str, value: Any) -> None:
    sys.modules["numpy"].seterr(**{key: value})


def _plain_formatter() -> Any:
    ipython = sys.modules.get("IPython")
    shell = None if ipython is None else ipython.get_ipython()
    return None if shell is None else shell.display_formatter.formatters["text/plain"]


def _precision_get() -> dict[str, Any] | None:
    formatter = _plain_formatter()  # %precision sets it; its observer sets float_format
    return None if formatter is None else {"float_precision": formatter.float_precision}


def _precision_set(key: str, value: Any) -> None:
    setattr(_plain_formatter(), key, value)


def _warnings_get() -> dict[str, Any]:
    return {"filters": list(warnings.filters)}


def _warnings_set(key: str, value: Any) -> None:
    warnings.filters[:0] = value  # the filters the cell added in front (see changed)
    mutated = getattr(warnings, "_filters_mutated", None)  # CPython caches the filters' version
    if mutated is not None:
        mutated()


SETTINGS: dict[str, tuple[Callable[[], dict[str, Any] | None], Callable[[str, Any], None]]] = {
    "matplotlib rcParams": (_matplotlib_get, _matplotlib_set),
    "numpy print options": (_numpy_get, _numpy_set),
    "numpy error handling": (_numpy_errors_get, _numpy_errors_set),
    "pandas options": (_pandas_get, _pandas_set),
    "%precision": (_precision_get, _precision_set),
    "warnings filters": (_warnings_get, _warnings_set),
}


def read() -> dict[str, dict[str, Any] | None]:
    """Every setting's values now (None: its library is not imported)."""
    out = {}
    for name, (get, _) in SETTINGS.items():
        try:
            out[name] = get()
        except Exception:  # a library in a state we cannot read: not carried
            out[name] = None
    return out


def changed(before: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """The values that differ from ``before``, by setting."""
    out: dict[str, dict[str, Any]] = {}
    for name, now in read().items():
        old = before.get(name)
        if now is None or old is None:
            continue
        if name == "warnings filters":  # filterwarnings() puts new filters in front: carry those
            added = len(now["filters"]) - len(old["filters"])
            if added > 0 and now["filters"][added:] == old["filters"]:
                out[name] = {"filters": now["filters"][:added]}
            continue
        for key, value in now.items():
            with contextlib.suppress(Exception):  # values that cannot be compared are left alone
                if key not in old or bool(value != old[key]):
                    out.setdefault(name, {})[key] = value
    return out


def apply(values: dict[str, dict[str, Any]]) -> list[str]:
    """Set the changed values in the kernel; the settings that could not be set."""
    failed = []
    for name, items in values.items():
        _, put = SETTINGS[name]
        for key, value in items.items():
            try:
                put(key, value)
            except Exception:
                failed.append(f"{name} {key}")
    return failed
