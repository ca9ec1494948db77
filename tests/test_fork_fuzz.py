"""A differential fuzzer of fork sync (issue 22): a fork cell leaves the kernel as the plain cell does.

Hypothesis builds a namespace (nested containers with shared and cyclic references, instances,
dataclasses, slots, closures, decorated and cached functions, partials, bound methods in
containers, views, numpy and pandas objects with metadata) and a cell that changes it through
random paths. Each example runs setup + cell twice in one kernel, plainly and as a fork cell, and
compares the namespace as a graph: every object's value, which names share which objects, and which
objects are the very ones that existed before the cell. A difference must be named in the fork
cell's one warning line; a silent one fails. ``NBTIMEOUT_FUZZ_EXAMPLES=5000`` runs longer.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from kernelclient import Kernel

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("NBTIMEOUT_FUZZ_EXAMPLES", "500"))
pytestmark = pytest.mark.timeout(max(900, EXAMPLES * 4))

# Defined once per kernel, in a namespace of its own kept in builtins, so %reset -f keeps it.
PROBE = textwrap.dedent('''
    import types, functools
    def _fz_describe(obj, index):
        import numpy as np, pandas as pd
        ref = lambda o: _fz_ref(o, index)
        if isinstance(obj, (int, float, complex, str, bytes, bool, type(None))):
            return ("atom", type(obj).__name__, repr(obj))
        if isinstance(obj, (list, tuple)):
            return (type(obj).__name__, [ref(x) for x in obj])
        if isinstance(obj, dict):
            return ("dict", [(ref(k), ref(v)) for k, v in obj.items()])
        if isinstance(obj, (set, frozenset)):
            return (type(obj).__name__, sorted(repr((type(x).__name__, x)) for x in obj))
        if isinstance(obj, (bytearray, memoryview)):
            return (type(obj).__name__, bytes(obj))
        if isinstance(obj, np.ma.MaskedArray):
            return ("masked", obj.data.tolist(), np.ma.getmaskarray(obj).tolist())
        if isinstance(obj, np.ndarray):
            items = [ref(x) for x in obj.ravel().tolist()] if obj.dtype.kind == "O" else obj.tolist()
            return ("array", str(obj.dtype), items, bool(obj.flags.writeable))
        if isinstance(obj, (pd.Series, pd.DataFrame)):
            values = obj.values.ravel().tolist()
            return ("pandas", type(obj).__name__, getattr(obj, "name", None), list(obj.index.names),
                    list(getattr(obj, "columns", pd.Index([])).names), [ref(v) for v in values])
        if isinstance(obj, types.FunctionType):
            return ("function", obj.__qualname__, [ref(c.cell_contents) for c in obj.__closure__ or ()])
        if isinstance(obj, types.MethodType):
            return ("method", ref(obj.__self__), obj.__func__.__qualname__)
        if isinstance(obj, functools.partial):
            return ("partial", ref(obj.func), [ref(a) for a in obj.args])
        if isinstance(obj, type):
            return ("class", obj.__qualname__)
        state = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, slot):
                state[slot] = getattr(obj, slot)
        return ("object", type(obj).__qualname__, sorted((k, ref(v)) for k, v in state.items()))
    def _fz_ref(obj, index):
        if isinstance(obj, (int, float, complex, str, bytes, bool, type(None))):
            return ("atom", type(obj).__name__, repr(obj))
        key = id(obj)
        if key not in index:
            index[key] = len(index["order"])
            index["order"].append(obj)
        return ("ref", index[key])
    def _fz_names(ns):
        return sorted(n for n in ns if not n.startswith("_") and n not in get_ipython().user_ns_hidden
                      and n not in ("In", "Out", "exit", "quit", "get_ipython", "np", "pd", "functools",
                                    "dataclasses", "csv", "io"))
    def _fz_graph():
        ns = get_ipython().user_ns
        names = _fz_names(ns)
        index = {"order": []}
        top = {n: _fz_ref(ns[n], index) for n in names}
        described, i = [], 0
        while i < len(index["order"]):
            described.append(_fz_describe(index["order"][i], index))
            i += 1
        before = builtins._fz_before
        born = [before.get(id(o), (None, None))[0] if before.get(id(o), (None, o))[1] is o else None
                for o in index["order"]]
        return repr((top, described, born))
    def _fz_mark():
        ns = get_ipython().user_ns
        index = {"order": []}
        for n in _fz_names(ns):
            _fz_ref(ns[n], index)
        i = 0
        while i < len(index["order"]):
            _fz_describe(index["order"][i], index)
            i += 1
        builtins._fz_before = {id(o): (n, o) for n, o in enumerate(index["order"])}
''')
INSTALL = ("import builtins\n_fz = {'get_ipython': get_ipython, 'builtins': builtins}\n"
           f"exec({PROBE!r}, _fz)\nbuiltins._fz_graph, builtins._fz_mark = _fz['_fz_graph'], _fz['_fz_mark']")

PRELUDE = textwrap.dedent('''
    import functools, dataclasses, csv, io
    import numpy as np, pandas as pd
    log, store = [], {}
    class Box:
        def __init__(self, v): self.v = v
        def put(self, x): self.v.append(x)
        @staticmethod
        def note(x): log.append(("static", x))
        @property
        def last(self): return self.v[-1] if self.v else None
        @last.setter
        def last(self, x): log.append(("set", x))
    @dataclasses.dataclass
    class D:
        a: list
        tag: str = dataclasses.field(default="t", compare=False)
    class S:
        __slots__ = ("x", "y")
        def __init__(self, x): self.x = x
    def traced(f):
        @functools.wraps(f)
        def wrapper(*args): return f(*args)
        return wrapper
    @traced
    def record(x): log.append(("record", x))
    @functools.lru_cache(maxsize=None)
    def cached(n):
        log.append(("cached", n))
        return n
    def put(key, value): store[key] = value
    puta = functools.partial(put, "a")
    def mk():
        acc = []
        def add(x):
            acc.append(x)
            return len(acc)
        return add
    add = mk()
    handlers = {"h": lambda x: log.append(("handler", x))}
    lambdas = [lambda x: store.setdefault("lam", []).append(x)]
''')

ATOM = st.one_of(st.integers(-3, 300), st.sampled_from(["'s'", "1.0", "None", "True", "'x' * 3"]))


@st.composite
def value(draw, depth=0):
    """Source of a fresh value: atoms, lists, dicts, tuples, sets, nested to depth 2."""
    if depth >= 2 or draw(st.booleans()):
        return str(draw(ATOM))
    kind = draw(st.sampled_from(["list", "dict", "tuple", "set"]))
    items = draw(st.lists(value(depth + 1), max_size=3))
    if kind == "list":
        return "[" + ", ".join(items) + "]"
    if kind == "tuple":
        return "(" + "".join(i + ", " for i in items) + ")"
    if kind == "set":
        return "{" + ", ".join(str(draw(ATOM)) for _ in items) + "}" if items else "set()"
    return "{" + ", ".join(f"'k{n}': {v}" for n, v in enumerate(items)) + "}"


# The world every cell can act on: names and what they are, so each operation is valid.
WORLD = [
    "a = [{v}]", "b = {{'k': {v}, 'l': [1]}}", "c = a", "box = Box([{v}])", "ms = [box.put, Box.note]",
    "d = D([{v}])", "sl = S([{v}])", "ba = bytearray(b'abcdef')", "mv = memoryview(ba)",
    "arr = np.arange(6.0)", "oa = np.empty(2, dtype=object); oa[0] = []; oa[1] = a",
    "ser = pd.Series([1, 2], name='s')", "df = pd.DataFrame({{'n': [1, 2], 'tags': [[1], ['x']]}})",
    "jobs = {{1, 2, 'j'}}", "sio = io.StringIO(); w = csv.writer(sio)", "workers = [box, Box(b['l'])]",
    "nest = [a, b, [a]]",
]
ALIASES = ["a.append(b)", "b['self'] = b", "b['a'] = a", "box.v.append(a)", "first = nest[2]",
           "a.append(a)", "sl.y = b", "d.a.append(box)", "store['b'] = b"]

OPS = [
    "a.append({v})", "a.insert(0, {v})", "c.append({v})", "b['k'] = {v}", "b.pop('k', None)", "b['l'].append({v})",
    "nest[2].append({v})", "box.v.append({v})", "box.put({v})", "ms[0]({v})", "ms[1]({v})", "box.last = {v}",
    "Box.note({v})", "workers[1].put({v})", "workers[0].v = b", "d.a.append({v})", "d.tag = 'done'",
    "sl.x = {v}", "sl.x.append(1) if isinstance(sl.x, list) else None", "record({v})", "cached({n})",
    "puta({v})", "add({v})", "handlers['h']({v})", "lambdas[0]({v})", "mv[{i}] = {n} % 256",
    "arr[{i}] = {n}", "arr.flags.writeable = False", "oa[0].append({v})", "ser.name = 'r{n}'",
    "ser.index.name = 'ix'", "df.columns.name = 'cols'", "df.loc[0, 'tags'].append({v})",
    "jobs.discard(1); jobs.add(1.0)", "jobs.add({n})", "w.writerow([{n}, 'x'])", "c = b", "b = [a]",
    "del c", "new = [a, b, box]", "first = a", "a[:] = [{v}]", "b.clear()", "b.update(z={v})",
]


@st.composite
def program(draw):
    world = [line.format(v=draw(value())) for line in WORLD]
    aliases = draw(st.lists(st.sampled_from(ALIASES), max_size=4, unique=True))
    ops = [draw(st.sampled_from(OPS)).format(v=draw(value()), n=draw(st.integers(0, 300)), i=draw(st.integers(0, 5)))
           for _ in range(draw(st.integers(1, 4)))]
    return "\n".join(world + aliases), "\n".join(ops)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    assert k.run("%load_ext nbtimeout").status == "ok"
    assert k.run(INSTALL).status == "ok"
    yield k
    k.shutdown()


def _run(kernel: Kernel, setup: str, cell: str, magic: str) -> tuple[str, str, str]:
    """(status of the cell, the namespace's graph after it, the cell's stderr)."""
    reply = kernel.run("get_ipython().run_line_magic('reset', '-f')\n" + PRELUDE + setup + "\n_fz_mark()")
    assert reply.status == "ok", reply.traceback
    result = kernel.run(magic + cell, timeout=60)
    status = result.status if result.status == "ok" else f"{result.ename}"
    return status, kernel.value("_fz_graph()"), result.stream("stderr")


def _names_of(graph: str) -> dict:
    import ast

    top, described, born = ast.literal_eval(graph)
    return top, described, born


def _differing_names(plain: str, fork: str) -> list[str]:
    """Names whose reachable graph differs (the value, sharing, or identity of what they reach)."""
    p_top, p_desc, p_born = _names_of(plain)
    f_top, f_desc, f_born = _names_of(fork)
    names = sorted(set(p_top) | set(f_top))

    def reach(top, desc, born, name):
        if name not in top:
            return None
        seen, out, todo = set(), [], [top[name]]
        while todo:
            ref = todo.pop()
            if ref[0] != "ref" or ref[1] in seen:
                continue
            seen.add(ref[1])
            out.append((ref[1], desc[ref[1]], born[ref[1]]))
            todo += _refs_in(desc[ref[1]])
        return top[name], out

    return [n for n in names if reach(p_top, p_desc, p_born, n) != reach(f_top, f_desc, f_born, n)]


def _refs_in(described) -> list:
    found = []
    todo = [described]
    while todo:
        item = todo.pop()
        if isinstance(item, tuple) and len(item) == 2 and item[0] == "ref" and isinstance(item[1], int):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            todo += list(item)
    return found


# Differences that belong to points of issue 22 handled elsewhere (the apply side): named here so
# the fuzzer reports them as known, not as silent losses.
KNOWN: dict[str, str] = {}


@seed(22)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
          suppress_health_check=list(HealthCheck))
@given(program())
def test_a_fork_cell_changes_the_kernel_as_the_plain_cell_does_or_says_what_it_could_not(kernel, prog):
    setup, cell = prog
    plain_status, plain, _ = _run(kernel, setup, cell, "")
    fork_status, fork, warning = _run(kernel, setup, cell, "%%timeout 20 -m fork\n")
    assert plain_status == fork_status, (setup, cell, warning)
    if plain == fork:
        return
    differing = _differing_names(plain, fork)
    lines = [line for line in warning.splitlines() if line.startswith("nbtimeout: not carried back")]
    assert lines, f"silent difference in {differing}\n--- setup\n{setup}\n--- cell\n{cell}"
    assert any(n in lines[0] for n in differing), (
        f"unnamed difference in {differing}\n--- setup\n{setup}\n--- cell\n{cell}\n--- warning\n{warning}")
