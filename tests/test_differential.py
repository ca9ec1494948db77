"""Same cell, with and without the limit (issue 21): the corpus of tests/diffcorpus.py runs plain and
under ``%timeout 600`` on each engine, and every difference a front end or the namespace shows must
belong to a known, named class (tests/diffknown.py); an unknown one fails.

NBTIMEOUT_DIFF_ENGINES picks the engines run at full size (default signal,thread, in lockstep: one
plain kernel and one per engine for each notebook, about 3,200 cells from 31 notebooks); fork, four
times slower per cell, runs every notebook capped at NBTIMEOUT_DIFF_FORK_CAP cells (default 35, about
1,100 cells; 0: none), or at full size when named in NBTIMEOUT_DIFF_ENGINES. NBTIMEOUT_DIFF_CAP caps
every engine's notebooks for a quick run. The summary table is printed (``pytest -s`` or ``-rP`` shows it) and, with
NBTIMEOUT_DIFF_REPORT=path, written to a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import diffcorpus
import diffknown
import diffrun
import pytest

ENGINES = [e for e in os.environ.get("NBTIMEOUT_DIFF_ENGINES", "signal,thread").split(",") if e]
CAP = int(os.environ["NBTIMEOUT_DIFF_CAP"]) if os.environ.get("NBTIMEOUT_DIFF_CAP") else None
FORK_CAP = 0 if "fork" in ENGINES else int(os.environ.get("NBTIMEOUT_DIFF_FORK_CAP", "35"))


def _corpus(cap):
    names = [*diffcorpus.DEFAULT, ("ipython-syntax", None)]
    if cap:
        names = [(name, min(c or cap, cap)) for name, c in names]
    return diffcorpus.notebooks(names)


@pytest.fixture(scope="module")
def corpus_run():
    runs = [(diffrun.run_corpus(_corpus(CAP), ENGINES), CAP)]
    if FORK_CAP:
        runs.append((diffrun.run_corpus(_corpus(min(CAP or FORK_CAP, FORK_CAP)), ["fork"]), FORK_CAP))
    texts, classified = [], []
    for run, _ in runs:
        text, found = diffrun.report(run, show=2)
        texts.append(text)
        classified += found
    text = "\n\n".join(texts)
    print(text)
    if os.environ.get("NBTIMEOUT_DIFF_REPORT"):
        Path(os.environ["NBTIMEOUT_DIFF_REPORT"]).write_text(text + "\n")
    return runs, text, classified


@pytest.mark.timeout(3600)
def test_the_corpus_is_code_nobody_here_wrote_and_large(corpus_run):
    runs, _, _ = corpus_run
    for run, cap in runs:
        for engine, notebooks in run.notebooks.items():
            assert notebooks >= 20, run.notebooks
            if not cap:
                assert run.cells[engine] >= 2000, run.cells


def _unknown(classified, fork: bool) -> list:
    return [item.difference for item in classified
            if item.cls is diffknown.UNKNOWN and (item.difference.engine == "fork") == fork]


@pytest.mark.timeout(3600)
def test_every_difference_under_an_in_kernel_limit_is_a_known_one(corpus_run):
    _, text, classified = corpus_run
    unknown = _unknown(classified, fork=False)
    assert not unknown, f"{len(unknown)} unknown differences:\n{text}"


@pytest.mark.xfail(reason="open, issue 22: the fork sync of this wave (merged from two branches) left "
                          "differences the known list does not name yet (decimal context, a value kept "
                          "in the child, difflib); the report lists them", strict=False)
def test_every_difference_under_a_fork_limit_is_a_known_one(corpus_run):
    _, text, classified = corpus_run
    unknown = _unknown(classified, fork=True)
    assert not unknown, f"{len(unknown)} unknown differences:\n{text}"
