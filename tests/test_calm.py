"""What an every-cell limit costs a notebook: 300 cells under ``%timeout 30`` (issue 14).

Counts, not timings: messages sent, widgets alive in the kernel, bytes added to the saved notebook.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(300)
CELLS = 300


def executed(*head: str, cells: int = CELLS) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    body = [f"x = {i}" if i % 3 else f"{i}" for i in range(cells)]  # a third show Out[n]
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (*head, *body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()  # stores widget state, as by default
    return nb


def saved(nb: nbformat.NotebookNode, cells: slice) -> bytes:
    """The bytes of some cells' outputs and counts, and the notebook's metadata, as saved."""
    part = [{"outputs": c.outputs, "execution_count": c.execution_count} for c in nb.cells[cells]]
    return json.dumps([part, nb.metadata], sort_keys=True).encode()


def test_300_finished_every_cell_cells_add_nothing_to_the_notebook():
    limited = executed("%load_ext nbtimeout", "%timeout 30")
    plain = executed("%load_ext nbtimeout", "pass")
    assert "widgets" not in limited.metadata
    added = len(saved(limited, slice(2, None))) - len(saved(plain, slice(2, None)))
    assert added == 0
    assert saved(limited, slice(2, None)) == saved(plain, slice(2, None))


def test_300_finished_every_cell_cells_send_nothing_and_leave_no_widget(kernel):
    assert kernel.run("%timeout 30").status == "ok"
    sent = []
    try:
        for i in range(CELLS):
            result = kernel.run(f"x = {i}" if i % 3 else f"{i}")
            assert result.status == "ok"
            sent += result.of("comm_open", "comm_msg", "display_data", "update_display_data")
    finally:
        kernel.run("%timeout off")
    assert sent == []
    alive = kernel.value("len(get_ipython().kernel.comm_manager.comms)")
    widgets = kernel.value("len(getattr(__import__('sys').modules.get('ipywidgets'), 'Widget', "
                           "type('W', (), {'widgets': {}})).widgets)")
    assert (alive, widgets) == (0, 0)


def test_a_long_every_cell_cell_leaves_only_an_empty_line():
    limited = executed("%load_ext nbtimeout", "%timeout 30", "import time\ntime.sleep(1.5)", cells=0)
    (out,) = limited.cells[2].outputs
    assert out.data["text/plain"] == ""
    assert len(json.dumps(out)) < 200
    assert "widgets" not in limited.metadata
