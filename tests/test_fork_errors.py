"""A fork child's exception, seen from a real kernel's front end and through the API (issue 17).

The error output of a failed fork cell is compared with the same cell's output in signal mode:
the kernel renders both, so they must match up to nbtimeout's own (hidden) frames.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from nbtimeout._traceback import NO_STACK

pytestmark = pytest.mark.timeout(180)

DEFINITIONS = '''
import os, signal, sys, threading, nbtimeout
def load(path, *rest, k=2, **kw):
    x = 41
    lock = threading.Lock()
    data = list(range(3))
    raise KeyError(path)
class C:
    def m(self):
        return load("p", 3, z=1)
class TwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")
        self.a = a
class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str")
class Holds(ValueError):
    pass
def rec(n):
    return rec(n + 1)
def outer():
    def inner(v):
        raise ValueError(v)
    return inner
def raised(*errors):
    caught = []
    for error in errors:
        try:
            raise error
        except BaseException as e:
            caught.append(e)
    return caught
'''


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


@pytest.fixture(scope="module", autouse=True)
def _definitions(kernel):
    assert kernel.run(DEFINITIONS).status == "ok"


def normalized(text: str) -> str:
    """A traceback without what differs by mode: cell numbers, the magic's options, hidden frames."""
    text = re.sub(r"In\[\d+\]", "In[N]", text)
    text = re.sub(r"-m (fork|signal)", "-m MODE", text)
    return re.sub(r"\[\.\.\. skipping hidden \d+ frame\]", "[hidden]", text)


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def both(kernel, body: str):
    return [kernel.run(f"%%timeout 5 -m {mode}\n{body}") for mode in ("signal", "fork")]


CASES = {
    "explicit cause": """
        try:
            load("a.csv")
        except KeyError as e:
            raise ValueError("v") from e""",
    "implicit context, a method": """
        try:
            C().m()
        except KeyError:
            raise ValueError("implicit")""",
    "context suppressed": """
        try:
            load("a.csv")
        except KeyError:
            raise ValueError("plain") from None""",
    "nested function from an earlier cell": "outer()(5)",
    "comprehension": "[load(i) for i in range(3)]",
    "notes": """
        e = ValueError("noted")
        e.add_note("a note")
        raise e""",
    "custom __init__ args": """
        try:
            load(1)
        except KeyError as e:
            raise TwoArgs(1, 2) from e""",
    "KeyboardInterrupt in the child": "raise KeyboardInterrupt('from the cell')",
    "SystemExit": "raise SystemExit('bye')",
    "__str__ raises": "raise BadStr()",
    "error in a loop, context from an earlier turn": """
        for i in range(2):
            try:
                load(i)
            except KeyError:
                if i:
                    raise TypeError("second")""",
}


@pytest.mark.parametrize("body", CASES.values(), ids=CASES.keys())
def test_fork_error_renders_as_in_signal_mode(kernel, body):
    signal_mode, fork_mode = both(kernel, cell(body))
    assert fork_mode.status == "error"
    assert (fork_mode.ename, fork_mode.evalue) == (signal_mode.ename, signal_mode.evalue)
    assert normalized(fork_mode.traceback) == normalized(signal_mode.traceback)
    assert "nbtimeout/" not in fork_mode.traceback.split("[... skipping hidden")[-1]


def test_function_names_and_parameters_in_every_frame(kernel):
    result = kernel.run(cell("""
        %%timeout 5 -m fork
        try:
            C().m()
        except KeyError:
            raise ValueError("implicit")"""))
    assert "in C.m(self)" in result.traceback
    assert "in load(path, k, *rest, **kw)" in result.traceback
    assert "During handling of the above exception, another exception occurred" in result.traceback


def test_api_error_of_a_notebook_class_is_caught_by_that_class(kernel):
    result = kernel.run(cell("""
        @nbtimeout.timeout(5, mode="fork")
        def fails():
            raise TwoArgs(3, 4)
        try:
            fails()
        except TwoArgs as e:
            caught = (type(e) is TwoArgs, str(e), e.a, e.__notes__ if hasattr(e, "__notes__") else None)"""))
    assert result.status == "ok", result.traceback
    assert kernel.value("caught") == (True, "3-4", 3, None)


def _python_rendering(stderr: str) -> str:
    """IPython 9 prints exception groups with Python's traceback module: keep what follows
    the frames of the magic, with the cells' file names made equal."""
    body = stderr.split("ExceptionGroup:", 1)[1]
    return re.sub(r"/tmp/ipykernel_\d+/\d+\.py", "CELL", body)


@pytest.mark.parametrize("body", [
    "raise ExceptionGroup('many', raised(ValueError(1), TypeError(2)))",
    """
    try:
        raise ExceptionGroup("g", raised(ValueError(1), TypeError(2)))
    except* ValueError:
        raise KeyError("x")""",
], ids=["group", "except*"])
def test_exception_groups_render_as_in_signal_mode(kernel, body):
    signal_mode, fork_mode = both(kernel, cell(body))
    assert (fork_mode.ename, fork_mode.evalue) == (signal_mode.ename, signal_mode.evalue)
    assert _python_rendering(fork_mode.stream("stderr")) == _python_rendering(signal_mode.stream("stderr"))
    assert "raise error" in fork_mode.stream("stderr")  # each member keeps its own traceback


def test_unpicklable_member_is_replaced_alone_and_says_so(kernel):
    result = kernel.run(cell("""
        %%timeout 5 -m fork
        e = Holds("has a lock")
        e.lock = threading.Lock()
        try:
            load("a")
        except KeyError as k:
            raise e from k"""))
    assert (result.ename, result.evalue) == ("Holds", "has a lock")
    assert "KeyError: 'a'" in result.traceback  # the cause still arrived, with its frames
    assert "in load(path, k, *rest, **kw)" in result.traceback
    notes = [line for line in result.traceback.splitlines() if line.startswith("nbtimeout:")]
    assert notes == ["nbtimeout: the fork child's Holds could not be carried back (TypeError: cannot pickle "
                     "'_thread.lock' object); this stand-in keeps its type name and message"]


def test_recursion_error_is_bounded_like_the_kernels(kernel):
    plain = kernel.run("rec(0)")
    signal_mode, fork_mode = both(kernel, "rec(0)")
    assert fork_mode.ename == signal_mode.ename == plain.ename == "RecursionError"
    # As long as without the limit (IPython shows every frame of a recursion, as there): the child
    # runs the cell a few frames deeper (nbtimeout's own), so it recurses a little less.
    assert 0.9 < len(fork_mode.traceback) / len(plain.traceback) < 1.1
    assert 0.9 < len(signal_mode.traceback) / len(plain.traceback) < 1.1


# --- %debug and %pdb ---------------------------------------------------------------------------

def test_debug_after_a_failed_fork_cell_shows_the_childs_locals(kernel):
    assert kernel.run('%%timeout 5 -m fork\nsize = 7\nload("p.csv", size)').ename == "KeyError"
    result = kernel.run_answering("%debug", ["p x", "p lock", "p data", "p path", "p rest", "p nothere",
                                             "up", "p size", "q"])
    out = plain(result.stream())
    assert ")load()\n" in out  # pdb stands in the child's innermost frame
    for shown in ("41", "<unlocked _thread.lock object at 0x", "[0, 1, 2]", "'p.csv'", "(7,)",
                  "NameError: name 'nothere' is not defined", "\n7\n"):
        assert shown in out, (shown, out)


def test_pdb_on_stops_in_the_child_frame(kernel):
    assert kernel.run("%pdb on").status == "ok"
    try:
        result = kernel.run_answering("%%timeout 5 -m fork\nouter()('boom')", ["p v", "q"])
    finally:
        assert kernel.run("%pdb off").status == "ok"
    assert result.ename == "ValueError"
    assert "'boom'" in plain(result.stream())


def test_debug_after_a_stop_says_the_locals_did_not_travel(kernel):
    result = kernel.run(cell("""
        %%timeout 1 -m fork
        def spin(k):
            j = 3
            while True: pass
        spin(2)"""))
    assert result.ename == "CellTimeoutError"
    out = plain(kernel.run_answering("%debug", ["p j", "p len('ok')", "q"]).stream())
    assert "NameError: name 'j' is not available: the fork child's variables were not carried back" in out
    assert "\n2\n" in out  # builtins still work


# --- a stop without a stack dump -------------------------------------------------------------

@pytest.mark.parametrize("handler", [
    "signal.signal(signal.SIGTERM, lambda *a: None)",
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))",
    "from signal import signal as install\ninstall(signal.SIGTERM, signal.SIG_IGN)",
], ids=["ignores", "exits", "SIG_IGN through an earlier import"])
def test_own_sigterm_handler_keeps_the_stop_location(kernel, handler):
    result = kernel.run(f"%%timeout 1 -m fork -g 0.2\n{handler}\ndef spin():\n    while True: pass\nspin()")
    assert result.ename == "CellTimeoutError", result.traceback
    assert re.search(r"; at line \d+ in spin\(\) of In \[\d+\]", "".join(result.displays()))
    assert result.traceback.rstrip().endswith("CellTimeoutError: ran past its 1 s limit (fork engine)")
    assert "in spin()" in result.traceback.split("[... skipping hidden")[-1]


def test_a_handler_installed_from_c_leaves_no_stack_and_that_is_said(kernel):
    result = kernel.run(cell("""
        %%timeout 1 -m fork -g 0.2
        import ctypes
        ctypes.CDLL(None).signal(signal.SIGTERM, ctypes.c_void_p(1))  # SIG_IGN, unseen by Python
        while True: pass"""))
    assert result.ename == "CellTimeoutError"
    assert f"; at {NO_STACK}" in "".join(result.displays())
    tail = result.traceback.split("[... skipping hidden")[-1]
    assert "nbtimeout/" not in tail
    assert re.search(r"Cell In\[\d+\], line 1", tail)
    assert result.traceback.rstrip().endswith(NO_STACK)


# --- sys.stdout set to None or closed ----------------------------------------------------------

STREAMLESS = """
@nbtimeout.timeout(5, mode="fork")
def forked(i):
    print("in child", i)
    os.write(1, b"raw\\n")
    return i + 1
def task(i):
    print("task", i)
    return i * 2
saved = sys.{name}
sys.{name} = None
try:
    called = forked(1)
    mapped = nbtimeout.map(task, [1, 2], timeout=5, workers=2).values()
    get_ipython().run_cell_magic("timeout", "5 -m fork", "print('cell')\\ncelled = 3")
finally:
    sys.{name} = saved
"""


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_stream_set_to_none_breaks_neither_fork_nor_map(kernel, name):
    result = kernel.run(STREAMLESS.format(name=name))
    assert result.status == "ok", result.traceback
    assert kernel.value("(called, mapped, celled)") == (2, [2, 4], 3)


def test_closed_stdout_breaks_neither_fork_nor_map(fresh_kernel):
    k = fresh_kernel
    assert k.run("%load_ext nbtimeout\nimport sys, os, nbtimeout\nsys.stdout.close()").status == "ok"
    kernel = k.run("print('x')")
    forked = k.run("%%timeout 5 -m fork\nprint('x')")
    assert (forked.ename, forked.evalue) == (kernel.ename, kernel.evalue)
    assert kernel.evalue == "I/O operation on closed file"
    fine = k.run(cell("""
        %%timeout 5 -m fork
        os.write(1, b'raw')
        z = 5
        sys.stderr.write('stderr still works')"""))
    assert fine.status == "ok", fine.traceback
    assert fine.stream("stderr") == "stderr still works"
    mapped = k.run("r = nbtimeout.map(lambda i: i * 2, [1, 2], timeout=5, workers=2)\n"
                   "sys.stderr.write(repr((z, r.values())))")
    assert mapped.status == "ok", mapped.traceback
    assert mapped.stream("stderr") == "(5, [2, 4])"


def test_chains_arrive_when_a_library_pickles_every_exception(fresh_kernel):
    # distributed installs tblib's pickling of every exception (attributes restored by setattr):
    # a class that refuses setattr must still arrive as itself, with its cause.
    kernel = fresh_kernel
    setup = cell("""
        %load_ext nbtimeout
        class Frozen(Exception):
            def __setattr__(self, name, value):
                raise AttributeError("frozen")
        import tblib.pickling_support
        tblib.pickling_support.install()  # covers the exception classes that exist now
        """)
    assert kernel.run(setup).status == "ok"
    result = kernel.run(cell("""
        %%timeout 10 -m fork
        try:
            {}["k"]
        except KeyError as err:
            raise Frozen("cold") from err
        """))
    assert (result.ename, result.evalue) == ("Frozen", "cold")
    assert "could not be carried back" not in result.traceback
    assert "KeyError: 'k'" in result.traceback
    assert "The above exception was the direct cause" in result.traceback
