"""A cell whose limit fired ends as stopped, whatever caught the stop on the way (issue 16, point 1).

IPython's ``%run`` and ``%%capture`` (and ``run_cell``) catch everything with a bare ``except:``;
so can a user's code. Through a real kernel: error status, ``CellTimeoutError`` and the banner,
or with ``-c`` status ok and the banner; Run All stops.
"""

from __future__ import annotations

import textwrap

import pytest
from kernelclient import Kernel, Result

pytestmark = pytest.mark.timeout(120)


def cell(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture(scope="module", autouse=True)
def _setup(kernel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scripts")
    (folder / "spin.py").write_text("while True:\n    pass\n")
    (folder / "catches.py").write_text("try:\n    while True: pass\nexcept:\n    print('script caught it')\n")
    assert kernel.run(f"import time, nbtimeout\nSCRIPTS = {str(folder)!r}").status == "ok"


def stopped(result: Result, limit: str = "500 ms") -> None:
    """The front end sees a stopped cell: error status, CellTimeoutError, the Stopped banner."""
    assert result.status == "error", (result.status, result.stream(), result.stream("stderr"))
    assert result.ename == "CellTimeoutError", result.traceback
    assert result.evalue == f"ran past its {limit} limit (signal engine)"
    assert any("Stopped" in text for text in result.displays() + result.widgets()), result.displays()


CATCHERS = {
    "%run of an endless script": "%run {SCRIPTS}/spin.py",
    "%run of a script with a bare except": "%run {SCRIPTS}/catches.py",
    "%%capture": "get_ipython().run_cell_magic('capture', '', 'while True: pass')",
    "run_cell": "get_ipython().run_cell('while True: pass')",
    "capture_output around run_cell": (
        "from IPython.utils.capture import capture_output\n"
        "with capture_output() as captured:\n    get_ipython().run_cell('while True: pass')"),
    "IPython.utils.io.Tee": (
        "from IPython.utils.io import Tee\ntee = Tee(SCRIPTS + '/tee.log', 'w')\n"
        "try:\n    get_ipython().run_cell('while True: pass')\nfinally:\n    tee.close()"),
    "exec with a bare except": 'exec("try:\\n    while True: pass\\nexcept:\\n    pass")',
    "a bare except": "try:\n    while True: pass\nexcept:\n    pass",
    "a bare except that raises something else": "try:\n    while True: pass\nexcept:\n    raise ValueError('mine')",
    "except BaseException returning": "def f():\n    try:\n        while True: pass\n    except BaseException:\n"
                                     "        return 'swallowed'\nf()",
}


@pytest.mark.parametrize("name", list(CATCHERS))
def test_a_caught_stop_still_ends_the_cell_as_stopped(kernel, name):
    body = CATCHERS[name].replace("{SCRIPTS}", kernel.value("SCRIPTS"))
    result = kernel.run(f"%%timeout 0.5\n{body}\n'value'")
    stopped(result)
    assert result.out is None  # no Out[n] for a stopped cell


@pytest.mark.parametrize("name", ["%run of an endless script", "%%capture", "a bare except"])
def test_under_the_every_cell_limit(kernel, name):
    body = CATCHERS[name].replace("{SCRIPTS}", kernel.value("SCRIPTS"))
    assert kernel.run("%timeout 0.5").status == "ok"
    try:
        stopped(kernel.run(body))
    finally:
        kernel.run("%timeout off")


def test_a_capture_cell_under_the_every_cell_limit(kernel):
    assert kernel.run("%timeout 0.5").status == "ok"
    try:
        stopped(kernel.run("%%capture\nwhile True: pass"))
    finally:
        kernel.run("%timeout off")


def test_continue_makes_a_caught_stop_ok_with_its_banner(kernel):
    result = kernel.run(f"%%timeout 0.5 -c\n%run {kernel.value('SCRIPTS')}/spin.py")
    assert result.status == "ok"
    assert any("Stopped" in text for text in result.displays() + result.widgets())


def test_run_all_stops_at_a_caught_stop(kernel):
    # A front end's Run All sends every cell; after an error, the kernel aborts the queued ones.
    first = kernel.client.execute(f"%%timeout 0.5\n%run {kernel.value('SCRIPTS')}/spin.py")
    second = kernel.client.execute("ran_after = True")
    replies = {}
    while len(replies) < 2:
        reply = kernel.client.get_shell_msg(timeout=30)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]["status"]
    assert replies == {first: "error", second: "aborted"}
    kernel.kernel_info()  # past ipykernel 6's abort window (see Kernel._collect)
    assert "ran_after" not in kernel.value("dir()")


def test_a_cell_that_catches_an_inner_limit_of_its_own_is_fine(kernel):
    # Only the cell's own limit counts: a nbtimeout.timeout inside that the code handles is its business.
    result = kernel.run(cell("""
        %%timeout 5
        try:
            with nbtimeout.timeout(0.2):
                while True: pass
        except TimeoutError:
            handled = True
        'went on'
    """))
    assert (result.status, result.out) == ("ok", "'went on'")


def test_the_next_cell_is_fine(kernel):
    stopped(kernel.run(f"%%timeout 0.5\n%run {kernel.value('SCRIPTS')}/spin.py"))
    result = kernel.run("6 * 7")
    assert (result.status, result.out) == ("ok", "42")


def test_a_swallowed_stop_in_a_script_is_told_in_one_line(kernel: Kernel):
    # IPython shows what %run's script raised: the stop reads as what it is, not as an internal class.
    result = kernel.run(f"%%timeout 0.5\n%run {kernel.value('SCRIPTS')}/spin.py")
    stopped(result)
    shown = result.traceback + result.stream() + result.stream("stderr")
    assert "_Expired" not in shown
    assert ("■ the time limit stopped this code; the timed cell ends as stopped "
            "(at line 1 in <module>() of spin.py)") in shown
    assert "spin.py:1" in result.traceback  # the stopped cell's traceback ends where the stop hit
