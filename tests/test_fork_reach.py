"""Fork mode watches what a cell reaches indirectly (issue 22), and big containers cheaply.

Each case runs setup, then the body plainly and, from the same setup, as a fork cell, in one real
kernel, and compares a probe; the fork cell must print no warning.
"""

from __future__ import annotations

import pytest
from kernelclient import Kernel
from test_fork_faithful import both

pytestmark = pytest.mark.timeout(600)

TRACED = """
import functools
log = []
def traced(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args)
    return wrapper
@traced
def record(x): log.append(x)
"""

# (setup, body, probe, what a plain kernel says)
CASES = {
    "a function wrapped by a decorator": (TRACED, "record(1); record(2)", "log", [1, 2]),
    "an lru_cache function": ("import functools\nlog = []\n@functools.lru_cache\ndef rec(x): log.append(x)",
                              "rec(1); rec(2)", "log", [1, 2]),
    "a dict of handlers": ("log = []\ndef a(): log.append('a')\nhandlers = {'a': a}", "handlers['a']()", "log", ["a"]),
    "a staticmethod": ("log = []\nclass K:\n    @staticmethod\n    def s(): log.append(1)", "K.s()", "log", [1]),
    "a property setter": ("log = []\nclass P:\n    @property\n    def v(self): return 1\n    @v.setter\n"
                          "    def v(self, x): log.append(x)\np = P()", "p.v = 5", "log", [5]),
    "a method of an object held in a list": ("log = []\nclass W:\n    def run(self, n): log.append(n)\n"
                                             "workers = [W()]", "workers[0].run(4)", "log", [4]),
    "a method of a base class": ("log = []\nclass B:\n    def run(self): log.append(1)\nclass C(B): pass\nc = C()",
                                 "c.run()", "log", [1]),
    "np.vectorize": ("log = []\ndef f(x):\n    log.append(x)\n    return x\nvf = np.vectorize(f)",
                     "vf([1, 2])", "log[-2:]", [1, 2]),
    "functools.partial": ("import functools\nstore = {}\ndef put(k, v): store[k] = v\n"
                          "puta = functools.partial(put, 'a')", "puta(3)", "store", {"a": 3}),
    "a list of lambdas": ("log = []\nfs = [lambda: log.append(1)]", "fs[0]()", "log", [1]),
    "a write through a memoryview": ("ba = bytearray(b'abc')\nmv = memoryview(ba)", "mv[0] = ord('Z')",
                                     "bytes(ba)", b"Zbc"),
    "a csv writer's file": ("import csv, io\nsio = io.StringIO()\nw = csv.writer(sio)", "w.writerow([1, 2])",
                            "sio.getvalue()", "1,2\r\n"),
    "a Series' name": ("s = pd.Series([1, 2])", "s.name = 'renamed'", "s.name", "renamed"),
    "an index's name": ("df = pd.DataFrame({'a': [1]})", "df.index.name = 'ix'", "df.index.name", "ix"),
    "the columns' name": ("df = pd.DataFrame({'a': [1]})", "df.columns.name = 'cx'", "df.columns.name", "cx"),
    "a list in an object column": ("df = pd.DataFrame({'tags': [[1], [2]]})", "df.loc[0, 'tags'].append('new')",
                                   "df.loc[0, 'tags']", [1, "new"]),
    "a list in an object array": ("oa = np.empty(2, dtype=object); oa[0] = []; oa[1] = []", "oa[0].append(1)",
                                  "oa[0]", [1]),
    "a masked array's mask": ("m = np.ma.array([1, 2, 3])", "m[0] = np.ma.masked", "np.ma.getmaskarray(m).tolist()",
                              [True, False, False]),
    "an array made read-only": ("a = np.zeros(3)", "a.flags.writeable = False", "a.flags.writeable", False),
    "a set element replaced by an equal one of another type": (
        "s = {1, 2}", "s.discard(1); s.add(1.0)", "sorted(type(x).__name__ for x in s)", ["float", "int"]),
    "a set element replaced by an equal object": (
        "from dataclasses import dataclass, field\n@dataclass(frozen=True)\nclass Job:\n    n: int\n"
        "    st: str = field(default='new', compare=False)\njobs = {Job(1)}",
        "jobs.discard(Job(1)); jobs.add(Job(1, 'done'))", "[j.st for j in jobs]", ["done"]),
    "one item of a big list, the rest still the same objects": (
        "big = [[i] for i in range(20_000)]\nkeep = big[7]", "big[5] = 'x'\nbig[19_999].append(1)",
        "(big[5], big[19_999], big[7] is keep, len(big))", ("x", [19_999, 1], True, 20_000)),
    "one key of a big dict, and one added": (
        "d = {i: [i] for i in range(20_000)}\nkeep = d[7]", "d[5] = -5\nd['new'] = 1",
        "(d[5], d['new'], d[7] is keep, len(d))", (-5, 1, True, 20_001)),
}


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    assert k.run("%load_ext nbtimeout").status == "ok"
    yield k
    k.shutdown()


# Both halves of this wave hold for a csv writer: the file's change comes back (reach), and the writer
# itself, a C object, is named as "may have changed" (travel's stays.py): a false alarm, left open.
_FALSE_ALARM = pytest.mark.xfail(reason="open, issue 22: stays.py names a C object whose referents were "
                                        "carried back", strict=False)


@pytest.mark.parametrize("case", [pytest.param(c, marks=_FALSE_ALARM) if c == "a csv writer's file" else c
                                  for c in CASES])
def test_a_change_made_through_what_the_cell_reaches_comes_back(kernel, case):
    setup, body, probe, expected = CASES[case]
    plain, forked, warning = both(kernel, setup, body, "", probe)
    assert plain == expected
    assert forked == plain
    assert warning == ""


def test_a_big_structure_with_an_alias_comes_back_whole(kernel):
    """250k records (beyond what the walk follows one by one) and ``first = records[0]``."""
    plain, forked, _ = both(kernel, "records = [{'id': i} for i in range(250_000)]\nfirst = records[0]",
                            "for r in records: r['f'] = 1", "",
                            "(sum('f' in r for r in records), 'f' in first, first is records[0])")
    assert plain == forked == (250_000, True, True)
