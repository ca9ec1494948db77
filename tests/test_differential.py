"""Same cell, with and without the limit (issue 21): the corpus of tests/diffcorpus.py runs plain and
under ``%timeout 600`` on each engine, and every difference a front end or the namespace shows must
belong to a known, named class (tests/diffknown.py); an unknown one fails.

NBTIMEOUT_DIFF_ENGINES picks the engines run at full size (default: all three, in lockstep: one
plain kernel and one per engine for each notebook); NBTIMEOUT_DIFF_CAP caps every module's cells for
a quick run. The summary table is printed (``pytest -s`` or ``-rP`` shows it) and, with
NBTIMEOUT_DIFF_REPORT=path, written to a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import diffcorpus
import diffknown
import diffrun
import pytest

ENGINES = [e for e in os.environ.get("NBTIMEOUT_DIFF_ENGINES", "signal,thread,fork").split(",") if e]
CAP = int(os.environ["NBTIMEOUT_DIFF_CAP"]) if os.environ.get("NBTIMEOUT_DIFF_CAP") else None


@pytest.fixture(scope="module")
def corpus_run():
    names = [*diffcorpus.DEFAULT, ("ipython-syntax", None)]
    if CAP:
        names = [(name, min(cap or CAP, CAP)) for name, cap in names]
    run = diffrun.run_corpus(diffcorpus.notebooks(names), ENGINES)
    text, classified = diffrun.report(run, show=2)
    print(text)
    if os.environ.get("NBTIMEOUT_DIFF_REPORT"):
        Path(os.environ["NBTIMEOUT_DIFF_REPORT"]).write_text(text + "\n")
    return run, text, classified


@pytest.mark.timeout(3600)
def test_the_corpus_is_code_nobody_here_wrote_and_large(corpus_run):
    run, _, _ = corpus_run
    for engine in ENGINES:
        assert run.notebooks[engine] >= 20, run.notebooks
        if not CAP:
            assert run.cells[engine] >= 2000, run.cells


@pytest.mark.timeout(3600)
def test_every_difference_under_a_limit_is_a_known_one(corpus_run):
    _, text, classified = corpus_run
    unknown = [item.difference for item in classified if item.cls is diffknown.UNKNOWN]
    assert not unknown, f"{len(unknown)} unknown differences:\n{text}"
