"""A cell on the fork engine: note the namespace, run the body in a child, sync the changes back."""

from __future__ import annotations

import sys
from typing import Any

from .._errors import CellResultError, not_carried
from .._notebook.cell import CompiledCell
from .._notebook.options import Options
from . import engine as _fork
from .child import _unlimit_memory, failure
from .procstate import kernel_random_state
from .protocol import OWN, announce
from .refs import RUNS_TEXT, code_names
from .stays import Held
from .sync import VALUE, Snapshot, apply, reachable_names


def _flush_figures(shell: Any) -> None:
    """Show the child's matplotlib figures, as the inline backend does after every cell."""
    for callback in shell.events.callbacks.get("post_execute", []):
        if getattr(callback, "__name__", "") == "flush_figures":
            callback()


def _used(codes: tuple, namespace: dict[str, Any]) -> set[str]:
    """The names the cell's code (and the notebook functions it calls) mention; only its own when it
    runs code from text (every name is watched then, but naming every held object would cry wolf)."""
    names = reachable_names(codes, namespace)
    if len(names) < len(namespace):
        return names
    own = set().union(*(code_names(c, set()) for c in codes if c is not None))
    return own if own & RUNS_TEXT else names


def run_cell(compiled: CompiledCell, shell: Any, options: Options) -> Any:
    """The cell's value; its changes applied to the kernel (what could not be: one line); errors re-raised."""
    __tracebackhide__ = True
    namespace = shell.user_ns
    hidden = set(shell.user_ns_hidden)
    kernel_random = kernel_random_state()

    def work() -> Any:
        announce(OWN)  # the snapshot is nbtimeout's work, not the cell's
        codes = (compiled.statements, compiled.last_expr)
        snapshot = Snapshot.take(namespace, hidden, codes, shell, kernel_random)
        held = Held(snapshot.registry, snapshot.prints)
        result = _fork.outcome(lambda: compiled.run(namespace))
        _unlimit_memory()  # --memory is the cell's allowance, not the pickling's
        _flush_figures(shell)
        has_value = result.error is None and compiled.last_expr is not None
        try:
            result.sync = snapshot.changes(namespace, hidden, shell, result.value, has_value)
            stayed = held.stayed(_used(codes, namespace))  # its wording first: put before the pickling's
            result.sync.lost = {**stayed, **{k: v for k, v in result.sync.lost.items() if k not in stayed}}
        except Exception as err:  # the cell's own error, if any, still says what happened
            if result.error is None:
                why = f"nbtimeout could not collect the fork cell's changes: {err!r}"
                result = failure(RuntimeError(why))
        result.value = None
        return result

    envelope = _fork.run(work, options.limit, grace=options.grace, memory=options.memory, shell=shell,
                         announces=True)
    value = None
    if envelope.sync is not None:
        value, _, problems = apply(envelope.sync, namespace)
        if problems:
            not_carried.set(True)
            print(f"nbtimeout: not carried back from the fork child: {'; '.join(problems)}", file=sys.stderr)
    if envelope.error is not None:
        _fork.raise_error(envelope)
    if envelope.sync is not None and VALUE in envelope.sync.lost:
        raise CellResultError(f"the cell's value cannot be carried back from the fork child: "
                              f"{envelope.sync.lost[VALUE]}")
    return value
