"""The tour notebooks say only what is true: sentences that name a behaviour are checked against it.

Each claim is read out of the notebooks' markdown and compared with what a real kernel does, so a
change of behaviour (or of wording) that makes them disagree fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kernelclient import WIDGET_VIEW

from nbtimeout._errors import MODES

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("0*.ipynb"))


def markdown() -> str:
    return "\n".join("".join(cell["source"]) for path in NOTEBOOKS
                     for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "markdown")


def engine_table() -> dict[str, list[str]]:
    """02's "Which engine when?" table: row label -> the cells after it."""
    rows = {}
    for line in markdown().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and line.startswith("|") and not set(cells[0]) <= {"-", ""}:
            rows[cells[0]] = cells[1:]
    return rows


def shape(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", text)


def test_the_countdown_the_tour_quotes_is_the_countdown_a_kernel_shows(kernel):
    quoted = [q for q in re.findall(r"`(◷[^`]*)`", markdown())]
    assert quoted, "the tour quotes no countdown"
    result = kernel.run("%%timeout 10 -m signal\nimport time\ntime.sleep(1.6)")
    live = [d for d in result.displays() if d.startswith("◷")]
    assert live, result.messages
    assert {shape(q) for q in quoted} <= {shape(d) for d in live}


def test_what_the_tour_says_of_widgets_in_fork_cells_is_what_they_do(kernel):
    said = engine_table()["widgets / comms inside the cell"][1]
    result = kernel.run("%%timeout 20 -m fork\nimport ipywidgets\ndisplay(ipywidgets.IntSlider(3))")
    shown = bool(result.of("comm_open")) and any(WIDGET_VIEW in m["content"]["data"]
                                                  for m in result.of("display_data"))
    assert said.startswith("yes") == shown, (said, result.messages)
    assert ("output only" in said) or not shown  # clicks cannot reach a child: the tour must say so


def test_the_engines_the_tour_names_are_the_engines_there_are():
    named = set(re.findall(r"\*\*(\w+)\*\*", markdown())) & {"signal", "thread", "fork", "alarm", "timer"}
    assert named <= set(MODES)
    assert "SIGALRM`: no copies" not in markdown()  # the signal engine does not use SIGALRM
    for sentence in re.findall(r"[^.]*SIGALRM[^.]*\.", markdown()):
        assert "leaves" in sentence or "not" in sentence, sentence
