"""What happens to a fork cell's changes once they are found (issue 22): each case runs the same
cells plainly and with the middle one under ``%%timeout 20 -m fork`` from the same state, in one
real kernel. A change either comes back as the plain run has it, or the cell's one warning line
names the top-level name and its record is not a clean "Finished"."""

from __future__ import annotations

import textwrap

import pytest
from kernelclient import Kernel

pytestmark = pytest.mark.timeout(600)

FORK = "%%timeout 20 -m fork\n"
WARNING = "nbtimeout: not carried back from the fork child: "
STAY = "changes made in a fork cell stay in the child; run this cell with -m signal"


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    assert k.run("%load_ext nbtimeout").status == "ok"
    yield k
    k.shutdown()


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def both(kernel: Kernel, setup: str, body: str, probe: str) -> tuple[object, object, str, list[str]]:
    """(probe plainly, probe after the fork cell, the fork cell's stderr, its displays)."""
    answers: list[object] = []
    stderr, displays = "", []
    for magic in ("", FORK):
        assert kernel.run("%reset -f").status == "ok"
        setup_result = kernel.run(cell(setup))
        assert setup_result.status == "ok", setup_result.traceback
        result = kernel.run(magic + cell(body))
        assert result.status == "ok", result.traceback
        stderr, displays = result.stream("stderr"), result.displays()
        answers.append(kernel.value(probe))
    return answers[0], answers[1], stderr, displays


def warned(stderr: str, displays: list[str]) -> str:
    """The one warning line; the record says not everything came back."""
    lines = [line for line in stderr.splitlines() if line.startswith(WARNING)]
    assert len(lines) == 1, stderr
    assert displays, stderr
    assert "not everything came back" in displays[-1], displays
    return lines[0]


# (setup, body, probe, the warning's part for the name): the change stays in the child, and is named
STAYS = {
    "generator advanced": ("def gen():\n    yield 1\n    yield 2\ng = gen()", "next(g)", "next(g, 'end')",
                           "g (generator): " + STAY),
    "sqlite tables": ("import sqlite3\ncon = sqlite3.connect(':memory:')", "con.execute('create table t(x)').close()",
                      "con.execute('select count(*) from sqlite_master').fetchone()",
                      "con (sqlite3.Connection): may have changed: " + STAY),
    "hash updated": ("import hashlib\nh = hashlib.sha256(b'a')", "h.update(b'b')", "h.hexdigest()",
                     "h (_hashlib.HASH): " + STAY),
    "compressor fed": ("import zlib\nz = zlib.compressobj()", "z.compress(b'abc' * 100);", "len(z.flush())",
                       "z (zlib.Compress): may have changed: " + STAY),
    "future resolved": ("import asyncio\nloop = asyncio.new_event_loop()\nfut = loop.create_future()",
                        "fut.set_result(42)", "fut.done()", "fut (_asyncio.Future): " + STAY),
    "process started": ("import subprocess", "p = subprocess.Popen(['sleep', '30'])", "'p' in dir()",
                        "p (subprocess.Popen): the process it started was stopped with the fork child"),
}


@pytest.mark.parametrize("case", list(STAYS))
def test_a_change_held_in_c_is_named_in_the_one_warning_line(kernel, case):
    setup, body, probe, part = STAYS[case]
    plain, fork, stderr, displays = both(kernel, setup, body, probe)
    assert plain != fork  # the case is real: the change does stay in the child
    line = warned(stderr, displays)
    assert part in line, line


def test_an_uncommitted_insert_on_a_file_database_is_named(kernel, tmp_path):
    setup = f"""
        import sqlite3
        con = sqlite3.connect({str(tmp_path / 'db.sqlite')!r})
        con.execute('create table if not exists t(x)'); con.execute('delete from t'); con.commit()
        """
    plain, fork, stderr, displays = both(kernel, setup, "con.execute('insert into t values (1)').close()",
                                         "(con.commit(), con.execute('select count(*) from t').fetchone())")
    assert plain == (None, (1,))
    assert fork == (None, (0,))
    assert "con (sqlite3.Connection): may have changed" in warned(stderr, displays)


def test_a_temporary_file_made_in_the_cell_is_deleted_with_the_child(kernel):
    plain, fork, stderr, displays = both(kernel, "import tempfile, os",
                                         "tf = tempfile.NamedTemporaryFile(); name = tf.name", "os.path.exists(name)")
    assert plain is True
    assert fork is False
    assert "tf (tempfile._TemporaryFileWrapper): its file was closed and deleted" in warned(stderr, displays)


MATPLOTLIB = """
    import matplotlib
    matplotlib.use('agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    line, = ax.plot([1, 2])
    """


def test_a_matplotlib_line_and_axes_change_in_place_without_a_warning(kernel):
    body = "line.set_color('red'); ax.set_xlabel('X')\nax.set_title('T')"
    probe = "(line is ax.lines[0], line.get_color(), ax.get_xlabel(), ax.get_title(), fig.axes[0] is ax)"
    plain, fork, stderr, _ = both(kernel, MATPLOTLIB, body, probe)
    assert plain == fork == (True, "red", "X", "T", True)
    assert WARNING not in stderr, stderr


def test_a_title_set_as_the_last_line_shows_the_new_title(kernel):
    kernel.run("%reset -f")
    assert kernel.run(cell(MATPLOTLIB)).status == "ok"
    result = kernel.run(FORK + "ax.set_title('T')")
    assert result.out == "Text(0.5, 1.0, 'T')", result.messages


def test_a_logger_level_set_in_the_cell_comes_back_to_the_same_logger(kernel):
    plain, fork, stderr, _ = both(kernel, "import logging\nlg = logging.getLogger('travel')\nlg.setLevel(0)",
                                  "lg.setLevel(logging.DEBUG)", "(lg.level, lg is logging.getLogger('travel'))")
    assert plain == fork == (10, True)
    assert WARNING not in stderr, stderr


DEFINED = {
    "lru_cache function": ("import functools", "@functools.lru_cache\ndef total(n): return n + 1",
                           "(total(2), total.cache_info().maxsize)", (3, 128)),
    "cache method": ("import functools", "class A:\n    @functools.cache\n    def m(self): return 7\nx = 1",
                     "(A().m(), x)", (7, 1)),
    "NewType": ("from typing import NewType", "UserId = NewType('UserId', int)\ny = 2", "(UserId(3), y)", (3, 2)),
    "singledispatch": ("import functools", """
        @functools.singledispatch
        def f(x): return 'obj'
        @f.register
        def _(x: int): return 'int'
        """, "(f(1), f('a'))", ("int", "obj")),
    "cached_property": ("import functools", "class C:\n    @functools.cached_property\n    def v(self): return 5",
                        "C().v", 5),
}


@pytest.mark.parametrize("case", list(DEFINED))
def test_a_cached_or_dispatching_definition_comes_back(kernel, case):
    setup, body, probe, expected = DEFINED[case]
    plain, fork, stderr, _ = both(kernel, setup, body, probe)
    assert plain == fork == expected
    assert WARNING not in stderr, stderr


def test_what_refers_to_a_new_name_by_name_loses_only_itself(kernel):
    setup = "import pickle\nclass ByName:\n    def __reduce__(self): return 'made_here'"
    plain, fork, stderr, _ = both(kernel, setup, "made_here = ByName()\nkept = 5", "kept")
    assert plain == fork == 5
    assert "made_here (" in stderr, stderr
    assert "every change" not in stderr, stderr


# A kernel thread that writes once the cell says so through a file (the child shares the disk, not
# the kernel's memory), and says through another file that it is done.
THREAD = """
    import os, threading, time
    def handshake(folder, write):
        def run():
            while not os.path.exists(f'{folder}/go'):
                time.sleep(0.01)
            write()
            open(f'{folder}/done', 'w').close()
        threading.Thread(target=run).start()
    def cell_waits(folder):
        open(f'{folder}/go', 'w').close()
        while not os.path.exists(f'{folder}/done'):
            time.sleep(0.01)
    """


def thread_case(kernel, tmp_path, data: str, write: str, body: str, probe: str):
    answers, stderr = [], ""
    for n, magic in enumerate(("", FORK)):
        folder = tmp_path / str(n)
        folder.mkdir()
        assert kernel.run("%reset -f").status == "ok"
        setup = kernel.run(cell(THREAD) + "\n" + data + f"\nhandshake({str(folder)!r}, lambda: {write})")
        assert setup.status == "ok", setup.traceback
        result = kernel.run(magic + f"cell_waits({str(folder)!r})\n" + body)
        assert result.status == "ok", result.traceback
        stderr = result.stream("stderr")
        answers.append(kernel.value(probe))
    return answers[0], answers[1], stderr


def test_a_kernel_threads_appends_during_the_cell_are_kept(kernel, tmp_path):
    plain, fork, stderr = thread_case(kernel, tmp_path, "log = []", "log.extend(f'thread{i}' for i in range(5))",
                                      "log.append('cell')", "log")
    assert plain == fork == ["thread0", "thread1", "thread2", "thread3", "thread4", "cell"]
    assert WARNING not in stderr, stderr


def test_a_change_goes_to_the_object_a_kernel_thread_moved(kernel, tmp_path):
    plain, fork, _ = thread_case(kernel, tmp_path, "items = [[0], [1], [2]]\ntarget = items[2]",
                                 "items.insert(0, ['T'])", "target.append('cell')", "items")
    assert plain == fork == [["T"], [0], [1], [2, "cell"]]


def test_an_object_both_sides_changed_keeps_the_kernels_and_says_so(kernel, tmp_path):
    plain, fork, stderr = thread_case(kernel, tmp_path, "d = {'a': 1}", "d.update(k='kernel')", "d['c'] = 'cell'",
                                      "d")
    assert plain == {"a": 1, "k": "kernel", "c": "cell"}
    assert fork == {"a": 1, "k": "kernel"}
    assert "d (changed in the kernel during the cell too: the kernel's is kept)" in stderr, stderr


SETTINGS = {
    "%precision": ("%precision 2", "get_ipython().display_formatter.formatters['text/plain'].float_precision",
                   "%precision"),
    "np.seterr": ("np.seterr(all='raise');", "np.geterr()['divide']", "np.seterr(all='warn');"),
    "%cd updates _dh": ("%cd {tmp}", "str(_dh[-1])", "%cd {cwd}"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_a_setting_made_in_the_cell_comes_back(kernel, case, tmp_path):
    body, probe, undo = SETTINGS[case]
    cwd = kernel.value("__import__('os').getcwd()")
    fill = {"tmp": str(tmp_path), "cwd": cwd}
    answers = []
    for magic in ("", FORK):
        assert kernel.run("import numpy as np").status == "ok"
        result = kernel.run(magic + body.format(**fill))
        assert result.status == "ok", result.traceback
        answers.append(kernel.value(probe))
        assert kernel.run(undo.format(**fill)).status == "ok"
    assert answers[0] == answers[1] != kernel.value(probe)


def test_importing_pandas_in_the_cell_warns_of_nothing(kernel):
    kernel.run("%reset -f")
    result = kernel.run(FORK + "import pandas")
    assert result.status == "ok", result.traceback
    assert WARNING not in result.stream("stderr"), result.stream("stderr")
    assert kernel.value("type(pandas).__name__") == "module"
