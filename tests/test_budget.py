"""``%timeout --budget``: whole notebooks run by nbclient (as nbconvert and papermill run them), and
the line magic's answers in a real kernel (issue 14)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.timeout(120)


def notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell shows as text: streams, text/plain of displays and results, errors."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"])
    return "\n".join(parts)


def run(nb: nbformat.NotebookNode) -> CellExecutionError | None:
    try:
        NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    except CellExecutionError as err:
        return err
    return None


def test_budget_caps_later_cells_and_ends_run_all():
    nb = notebook(
        "%load_ext nbtimeout\nimport time",
        "%timeout --budget 1.5s",
        "time.sleep(0.6)",                                    # spends 0.6 s
        "%timeout",                                           # shows what is left
        "%%timeout 10\ntime.sleep(5)\nslept = True",          # its own 10 s is capped by the 0.9 s left
        "print('never runs')",
    )
    error = run(nb)
    assert error is not None  # Run All ends at the cell the budget stopped
    cells = nb.cells
    left = re.search(r"budget: (\d+ ms|\d(?:\.\d+)? s) left of 1\.5 s", text(cells[3]))
    assert left, text(cells[3])
    stopped = text(cells[4])
    assert "CellTimeoutError: the notebook's 1.5 s budget ran out (signal engine)" in stopped
    assert "■ Stopped: the notebook's budget stopped this cell after " in stopped
    assert "(limit: what was left of the 1.5 s budget, signal engine); the notebook's 1.5 s budget ran out" in stopped
    assert cells[5].execution_count is None
    assert cells[5].outputs == []


def test_spent_budget_stops_each_further_cell_at_once_and_off_clears_it():
    nb = notebook(
        "%load_ext nbtimeout\nimport time",
        "%timeout --budget 0.5s -c",                           # -c: Run All goes on
        "time.sleep(2)\nprint('slept')",                       # stopped when the budget runs out
        "ran_after = True\nprint('ran after')",                # spent: stopped before it starts
        "%timeout off",
        "print('free:', 'ran_after' in globals())",
    )
    assert run(nb) is None
    cells = nb.cells
    assert "budget: 500 ms left of 500 ms (-c" in text(cells[1])
    assert "slept" not in text(cells[2])
    assert "■ Stopped (continuing): the notebook's budget stopped this cell after " in text(cells[2])
    spent = text(cells[3])
    assert spent.startswith("■ Budget spent: the notebook's 500 ms budget is spent: this cell did not run")
    assert "ran after" not in spent
    assert "budget: off" in text(cells[4])
    assert text(cells[5]) == "free: False\n"
    assert "widgets" not in nb.metadata  # nothing of nbtimeout in the notebook's widget state


def test_budget_counts_the_time_cells_run(kernel):
    assert kernel.run("%timeout --budget 2s").status == "ok"
    try:
        for _ in range(20):  # 20 quick cells spend almost nothing
            assert kernel.run("x = 1").status == "ok"
        shown = kernel.run("%timeout").stream()
    finally:
        kernel.run("%timeout off")
    left = re.search(r"budget: (\d(?:\.\d+)?) s left of 2 s", shown)
    assert left, shown
    assert float(left.group(1)) >= 1.5


@pytest.mark.parametrize(("line", "words"), [
    ("%timeout --budget abc", "--budget 'abc' is not a positive number"),
    ("%timeout --budget 0", "must be finite and greater than zero"),
    ("%timeout --budget 10m -m fork", "--budget takes only a duration and -c, not -m"),
    ("%timeout 30 --budget 10m", "--budget takes only a duration and -c, not a limit"),
    ("%%timeout 5 --budget 10m\n1", "--budget is for the whole notebook"),
])
def test_budget_refuses_bad_input_and_keeps_what_was_set(kernel, line, words):
    result = kernel.run(line)
    assert result.ename == "UsageError"
    assert words in result.evalue
    assert "budget: off" in kernel.run("%timeout").stream()
