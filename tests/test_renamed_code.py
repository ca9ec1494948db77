"""A notebook function's code keeps naming its cell after a trip through a pickle (issue 20).

cloudpickle 3.1.3 renames every code object it pickles by value to ``<dynamic-code>``; another
version may do something else again. Here a stand-in that renames every code object to
``<renamed-in-transit>`` is put in front of whatever cloudpickle is installed, in the kernel (so the
fork children and map task servers forked from it have it too): where a stopped task was, the
frames of a carried error, and ``%debug`` must still name the cell and show its lines.
"""

from __future__ import annotations

import pickle
import re
import textwrap
import types

import cloudpickle
import pytest

from nbtimeout import _pickling

pytestmark = pytest.mark.timeout(120)

RENAMED = "<renamed-in-transit>"

# In the kernel: cloudpickle's own code reducer, then every code object renamed whatever it does.
STAND_IN = f"""
import cloudpickle, pickle, types
_cloudpickles_own = cloudpickle.Pickler._dispatch_table[types.CodeType]
def _renaming(code):
    return _cloudpickles_own(code.replace(co_filename={RENAMED!r}))
cloudpickle.Pickler._dispatch_table[types.CodeType] = _renaming
"""

DEFINITIONS = """
import time, nbtimeout
from concurrent.futures import ThreadPoolExecutor
def work(kind):
    if kind == "c-loop":
        sum(range(10**10))
    if kind == "raise":
        raise KeyError(kind)
    return kind
class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str")
"""


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


@pytest.fixture(scope="module")
def defined(kernel) -> int:
    """The In [N] of the cell that defines ``work`` and ``BadStr``, run after the stand-in."""
    assert kernel.run(STAND_IN).status == "ok"
    result = kernel.run(DEFINITIONS)
    assert result.status == "ok"
    # it bites: cloudpickle's own pickle loses the name (as <dynamic-code> from 3.1.3 on)
    assert kernel.value("pickle.loads(cloudpickle.dumps(work)).__code__.co_filename") in (RENAMED, "<dynamic-code>")
    return result.reply["execution_count"]


def test_a_task_on_an_executor_names_its_cell_and_shows_its_lines(kernel, defined):
    result = kernel.run(cell("""
        with ThreadPoolExecutor(1) as pool:
            r = nbtimeout.map(work, ["c-loop", "raise"], timeout=0.5, grace=0.3, executor=pool)
        [o.status for o in r]"""))
    assert result.status == "ok", result.traceback
    assert result.out == "['stopped', 'failed']"
    n = defined
    assert kernel.value("r[0].error.where") == f"line 5 in work() of In [{n}]"
    for index, lineno, source in ((0, 5, "sum(range(10**10))"), (1, 7, "raise KeyError(kind)")):
        shown = kernel.run(f"raise r[{index}].error")
        assert f"Cell In[{n}], line {lineno}, in work(" in shown.traceback
        assert f"----> {lineno}         {source}" in shown.traceback
        assert RENAMED not in shown.traceback
    debugged = kernel.run_answering("%debug", ["q"])
    assert "sum(range(10**10))" in re.sub(r"\x1b\[[0-9;]*m", "", debugged.stream())


def test_a_fork_error_of_a_cell_class_names_its_cell(kernel, defined):
    # The kernel's str() of the error runs BadStr.__str__ as the error brought it back from the child.
    result = kernel.run("%%timeout 5 -m fork\nraise BadStr()")
    assert result.status == "error"
    assert f"Cell In[{defined}], line 11, in BadStr.__str__(self)" in result.traceback
    assert '---> 11         raise RuntimeError("no str")' in result.traceback
    assert RENAMED not in result.traceback


def test_a_function_made_in_a_fork_cell_names_its_cell_in_the_kernel(kernel, defined):
    made = kernel.run(cell("""
        %%timeout 5 -m fork
        def made_in_fork():
            return 1 / 0"""))
    assert made.status == "ok", made.traceback
    result = kernel.run("made_in_fork()")
    assert f"Cell In[{made.reply['execution_count']}], line 3, in made_in_fork()" in result.traceback
    assert "----> 3     return 1 / 0" in result.traceback


def test_every_code_object_keeps_its_file_name_whatever_cloudpickle_does(monkeypatch):
    own = cloudpickle.Pickler._dispatch_table[types.CodeType]
    monkeypatch.setitem(cloudpickle.Pickler._dispatch_table, types.CodeType,
                        lambda code: own(code.replace(co_filename=RENAMED)))
    namespace = {"__name__": "__main__"}
    exec(compile(cell("""
        def f(x):
            g = lambda y: y + 1
            return [g(i) for i in range(x)]
        class K:
            def m(self):
                return 2"""), "<cell-7>", "exec"), namespace)
    assert pickle.loads(cloudpickle.dumps(namespace["f"])).__code__.co_filename != "<cell-7>"  # it bites
    f, k = pickle.loads(_pickling.dumps((namespace["f"], namespace["K"])))
    nested = [c for c in f.__code__.co_consts if isinstance(c, types.CodeType)]
    assert nested
    assert {c.co_filename for c in [f.__code__, *nested, k.m.__code__]} == {"<cell-7>"}
    assert (f(3), k().m()) == ([1, 2, 3], 2)
