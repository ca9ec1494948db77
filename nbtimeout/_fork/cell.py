"""A cell on the fork engine: note the namespace, run the body in a child, sync the changes back."""

from __future__ import annotations

import sys
from typing import Any

from .._notebook.cell import CompiledCell
from .._notebook.options import Options
from . import engine as _fork
from .sync import Snapshot, apply


def _flush_figures(shell: Any) -> None:
    """Show the child's matplotlib figures, as the inline backend does after every cell."""
    for callback in shell.events.callbacks.get("post_execute", []):
        if getattr(callback, "__name__", "") == "flush_figures":
            callback()


def run_cell(compiled: CompiledCell, shell: Any, options: Options) -> Any:
    """The cell's value; its namespace changes applied to the kernel; errors re-raised."""
    __tracebackhide__ = True
    namespace = shell.user_ns
    hidden = set(shell.user_ns_hidden)

    def work() -> Any:
        snapshot = Snapshot.take(namespace, hidden, (compiled.statements, compiled.last_expr))
        result = _fork.outcome(lambda: compiled.run(namespace))
        _flush_figures(shell)
        changes = snapshot.changes(namespace, hidden)
        changes.value, changes.error = result.value, result.error
        changes.error_frames, changes.error_text = result.error_frames, result.error_text
        return changes

    envelope = _fork.run(work, options.limit, grace=options.grace, memory=options.memory, shell=shell)
    apply(envelope, namespace, dict(namespace))
    if envelope.unsent:
        print(f"nbtimeout: not sent back from the fork child (cannot be pickled): "
              f"{', '.join(sorted(envelope.unsent))}", file=sys.stderr)
    if envelope.error is not None:
        _fork.raise_error(envelope)
    return envelope.value
