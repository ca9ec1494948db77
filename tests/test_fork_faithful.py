"""Fork mode is faithful (issue 11): a fork cell leaves the kernel as if the cell had run in it.

Each case runs the same cells twice in one real kernel, once plainly and once with the middle cell
under ``%%timeout 5 -m fork``, from a fresh namespace each time, and compares what a probe
expression says afterwards. The fork run must also print no warning.
"""

from __future__ import annotations

import textwrap

import pytest
from kernelclient import Kernel

pytestmark = pytest.mark.timeout(300)

FORK = "%%timeout 5 -m fork\n"


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def run_ok(kernel: Kernel, code: str) -> str:
    result = kernel.run(code)
    assert result.status == "ok", result.traceback
    return result.stream("stderr")


def both(kernel: Kernel, setup: str, body: str, after: str, probe: str) -> tuple[object, object, str]:
    """(probe without the magic, probe with the body in a fork cell, the fork cell's stderr)."""
    answers, warning = [], ""
    for magic in ("", FORK):
        run_ok(kernel, "%reset -f")
        run_ok(kernel, "import os, sys, random, enum, numpy as np, pandas as pd\n" + cell(setup))
        warning = run_ok(kernel, magic + cell(body))
        if after:
            run_ok(kernel, cell(after))
        answers.append(kernel.value(probe))
    return answers[0], answers[1], warning


# (setup, body, after, probe, expected): expected is what a plain kernel says, checked too, so the
# comparison cannot pass by both runs being wrong in the same way.
CASES = {
    # 1. functions and classes made in the cell live in the kernel's namespace
    "function sees a later name": ("", "def f(): return LATER", "LATER = 5", "f()", 5),
    "global statement writes the kernel's name": (
        "", """
        count = 0
        def bump():
            global count
            count += 1
        """, "bump(); bump()", "count", 2),
    "method reads the current global": (
        "SCALE = 1", """
        class M:
            def get(self): return SCALE
        """, "SCALE = 3", "M().get()", 3),
    "helper redefined later is used": (
        "", """
        def helper(): return 1
        def use(): return helper()
        """, "def helper(): return 2", "use()", 2),
    "lambda sees a later name": ("", "g = lambda x: x + OFFSET", "OFFSET = 10", "g(1)", 11),
    "decorated function calls back into the notebook": (
        """
        calls = []
        def logged(f):
            def wrapper(*args):
                calls.append(f.__name__)
                return f(*args)
            return wrapper
        """, "@logged\ndef sq(x): return x * x\nsq(3)", "sq(4)", "calls", ["sq", "sq"]),
    "closure made in the cell keeps counting": (
        "", """
        def make():
            n = 0
            def inc():
                nonlocal n
                n += 1
                return n
            return inc
        inc = make()
        inc()
        """, "inc()", "inc()", 3),
    "called from a later timed signal cell": (
        "total = 0", """
        def add(k):
            global total
            total += k
        """, "%%timeout 5\nadd(2)\nadd(3)", "total", 5),
    "class with super(), properties and a dataclass": (
        "class Base:\n    def hello(self): return 'base'",
        """
        import dataclasses
        class Child(Base):
            def hello(self): return 'child+' + super().hello()
            @property
            def loud(self): return self.hello().upper() + SUFFIX
            @staticmethod
            def static(): return SUFFIX
        @dataclasses.dataclass
        class Point:
            x: int
            def shifted(self): return Point(self.x + SHIFT)
        """, "SUFFIX = '!'; SHIFT = 2",
        "(Child().loud, Child.static(), issubclass(Child, Base), Point(1).shifted().x, repr(Point(1)))",
        ("CHILD+BASE!", "!", True, 3, "Point(x=1)")),
    "function registered into an earlier dict and list": (
        "HANDLERS = {}; ORDER = []\ndef register(f):\n    HANDLERS[f.__name__] = f; ORDER.append(f)\n    return f",
        "@register\ndef on_x(): return X_VALUE", "X_VALUE = 4",
        "(HANDLERS['on_x'](), ORDER[0] is HANDLERS['on_x'] is on_x)", (4, True)),
    "exception class made in the cell, raised later": (
        "", "class Oops(Exception):\n    pass", """
        try:
            raise Oops('x')
        except Oops as e:
            caught = type(e) is Oops
        """, "caught", True),
    # 2. objects that existed before the cell come back as themselves
    "enum member is the member": (
        "class Color(enum.Enum):\n    RED = 1", "c = Color.RED\nfavs = [Color.RED]", """
        match c:
            case Color.RED: matched = True
            case _: matched = False
        """, "(c is Color.RED, c == Color.RED, favs[0] is Color.RED, matched)", (True, True, True, True)),
    "instance of an earlier class": ("class Q: pass", "q = Q()", "", "isinstance(q, Q)", True),
    "instance changed in place keeps its class and aliases": (
        "class P: pass\np = P(); alias = p", "p.x = 1", "", "(type(p) is P, alias is p, alias.x)", (True, True, 1)),
    "nested containers hold the old objects": (
        "a = [1]; b = {'k': [a]}", "c = [[a], {'x': b}, (a, b)]", "",
        "(c[0][0] is a, c[1]['x'] is b, c[2][0] is a, b['k'][0] is a)", (True, True, True, True)),
    "new object's attribute is an old object": (
        "class Box: pass\nshared = [1]", "box = Box(); box.item = shared", "", "box.item is shared", True),
    "rebinding to an older object": (
        "A1 = [1]; A2 = [2]; keep = A1", "A1, A2 = A2, A1", "", "(A1, A2, keep is A2)", ([2], [1], True)),
    "the cell's value is the old object": ("big = [1, 2]", "big", "", "_ is big", True),
    "old class redefined in the cell": (
        "class R:\n    v = 1\nold = R()", "class R:\n    v = 2\nnew = R()", "",
        "(type(old) is R, type(new) is R, old.v, new.v)", (False, True, 1, 2)),
    "a name rebound to a new list holding its old object": (
        "L = [1]; keep = L", "L = [L]", "", "(L[0] is keep, L)", (True, [[1]])),
    "method added to an earlier class": (
        "class Q2: pass\nq2 = Q2()", "Q2.late = lambda self: LATE", "LATE = 'later'", "q2.late()", "later"),
    # 3. changes in place: every alias sees them
    "changed, then its name deleted: the alias sees the change": (
        "L = [1]; alias = L", "L.append(2)\ndel L", "", "(alias, 'L' in globals())", ([1, 2], False)),
    "dict keyed by instances": (
        "class Key: pass\nk1 = Key(); reg = {k1: 1}", "reg[k1] += 1\nk2 = Key(); reg[k2] = 5", "",
        "(reg[k1], reg[k2], list(reg)[0] is k1)", (2, 5, True)),
    "numpy array through a dict, a list and its name": (
        "A = np.zeros(5); cfg = {'arr': A}; lst = [A]", "cfg['arr'][0] = 7", "",
        "(A[0].item(), lst[0][0].item(), cfg['arr'] is A)", (7.0, 7.0, True)),
    "numpy view stays a view": (
        "A = np.zeros(5); v = A[1:3]", "v[0] = 7\nA[2] = 5", "",
        "(v.tolist(), v.base is A, A.tolist())", ([7.0, 5.0], True, [0.0, 7.0, 5.0, 0.0, 0.0])),
    "list, dict, set, bytearray and their aliases": (
        "L = [1]; D = {'a': 1}; S = {1, 2}; B = bytearray(b'ab'); al = (L, D, S, B)",
        "L.append(2)\nD.pop('a'); D['b'] = 2\nS.discard(1); S.add(3)\nB[0] = 122; B.extend(b'c')", "",
        "(al[0] is L, L, al[1] is D, D, al[2] is S, sorted(S), al[3] is B, bytes(B))",
        (True, [1, 2], True, {"b": 2}, True, [2, 3], True, b"zbc")),
    "dict order after pop and re-insert": (
        "od = {'a': 1, 'b': 2}", "od.pop('a'); od['a'] = 3", "", "list(od.items())", [("b", 2), ("a", 3)]),
    "dict held by a class attribute": (
        "cfg = {}\nclass K:\n    settings = cfg", "cfg['x'] = 1", "", "(K.settings is cfg, K.settings)",
        (True, {"x": 1})),
    "defaultdict and deque": (
        "from collections import defaultdict, deque\ndd = defaultdict(list); dq = deque([1]); al = (dd, dq)",
        "dd['k'].append(1)\ndq.appendleft(0)", "",
        "(al[0] is dd, dict(dd), dd.default_factory is list, al[1] is dq, list(dq))",
        (True, {"k": [1]}, True, True, [0, 1])),
    "Counter and OrderedDict": (
        "from collections import Counter, OrderedDict\nctr = Counter('ab'); od = OrderedDict(a=1, b=2)",
        "ctr['a'] += 5\nod.move_to_end('a')", "", "(dict(ctr), list(od))", ({"a": 6, "b": 1}, ["b", "a"])),
    "object of a library class that pickles itself": (
        """
        class Lib:  # as a library's class: its state is what __getstate__ says
            __module__ = 'somelib'
            def __init__(self): self.data = [1]
            def __getstate__(self): return {'data': list(self.data)}
            def __setstate__(self, state): self.__dict__.update(state)
        lib = Lib(); al = lib
        """, "lib.data.append(2)", "", "(al is lib, lib.data)", (True, [1, 2])),
    "instance with __slots__": (
        "class S:\n    __slots__ = ('x', 'y')\ns = S(); s.x = 1; t = s", "s.y = 2\ndel s.x", "",
        "(t is s, hasattr(s, 'x'), s.y)", (True, False, 2)),
    "class-level state": (
        "class Counter:\n    n = 0\n    @classmethod\n    def bump(cls): cls.n += 1", "Counter.bump()", "",
        "Counter.n", 1),
    "closure of an earlier function": (
        """
        def make():
            n = 0
            box = [0]
            def inc():
                nonlocal n
                n += 1
                box[0] += 10
                return n, box[0]
            return inc
        inc = make()
        """, "inc()", "", "inc()", (2, 20)),
    "pandas DataFrame changed in place": (
        "df = pd.DataFrame({'a': [1, 2]}); alias = df",
        "df.loc[0, 'a'] = 9\ndf['b'] = ['x', 'y']", "",
        "(alias is df, df.to_dict('list'))", (True, {"a": [9, 2], "b": ["x", "y"]})),
    "recursive structures": (
        "node = {'name': 'n'}; node['self'] = node", "node['x'] = 1\nr = []; r.append(r)", "",
        "(node['self'] is node, node['x'], r[0] is r)", (True, 1, True)),
    "new objects shared between names": (
        "", "a = []; b = a\nx = [1]; d = {'x': x}", "", "(a is b, d['x'] is x)", (True, True)),
    "deleted names": ("gone = 1; kept = 2", "del gone", "", "('gone' in globals(), kept)", (False, 2)),
    "mutable default argument": (
        "def remember(x, seen=[]):\n    seen.append(x)\n    return list(seen)",
        "remember(1)", "", "remember(2)", [1, 2]),
    "function attribute counter": (
        "def f(): pass\nf.calls = 0", "f.calls += 1", "", "f.calls", 1),
    "instance's class reassigned": (
        "class A0: pass\nclass B0: pass\nobj = A0(); al = obj", "obj.__class__ = B0", "",
        "(type(al) is B0, al is obj)", (True, True)),
    "method of an earlier class mutates its instance": (
        "class Acc:\n    def __init__(self): self.items = []\n"
        "    def add(self, x): self.items.append(x)\nacc = Acc()",
        "acc.add(1)", "acc.add(2)", "acc.items", [1, 2]),
    "string column of a DataFrame changed in place": (
        "df = pd.DataFrame({'s': ['a', 'b']}, dtype=object); col = df['s']",
        "df.loc[1, 's'] = 'z'", "", "df['s'].tolist()", ["a", "z"]),
    "pandas str, nullable, categorical and datetime columns changed in place": (
        "df = pd.DataFrame({'s': ['a', 'b'], 'n': pd.array([1, None], dtype='Int64'),"
        " 'c': pd.Categorical(['x', 'y']), 't': pd.to_datetime(['2020-01-01', '2020-01-02'])}); alias = df",
        "df.loc[0, 's'] = 'z'\ndf.loc[1, 'n'] = 5\ndf.loc[0, 'c'] = 'y'\ndf.loc[1, 't'] = pd.Timestamp('2021-05-05')",
        "", "(alias is df, df['s'].tolist(), df['n'].tolist(), df['c'].tolist(), str(df['t'][1].date()))",
        (True, ["z", "b"], [1, 5], ["y", "y"], "2021-05-05")),
    "large array written in one element": (
        "big = np.zeros(1_000_000); view = big[10:20]", "big[15] = 3", "",
        "(view[5].item(), float(big.sum()), view.base is big)", (3.0, 3.0, True)),
    "changes made by code run from text: exec and a nested fork cell": (
        "L = [1]; M = {}",
        "exec('L.append(2)')\nget_ipython().run_cell_magic('timeout', '5 -m fork', 'M[\"k\"] = L[-1]\\nN = 3')",
        "", "(L, M, N)", ([1, 2], {"k": 2}, 3)),
    # 4. random state
    "random: the kernel's state, and it goes on": (
        "random.seed(0)", "x = random.random()", "y = random.random()", "(x, y)",
        (0.8444218515250481, 0.7579544029403025)),
    "numpy's global generator: the kernel's state, and it goes on": (
        "np.random.seed(0)", "x = float(np.random.rand())", "y = float(np.random.rand())", "(x, y)",
        (0.5488135039273248, 0.7151893663724195)),
    "numpy Generator, RandomState and random.Random objects go on": (
        "rng = np.random.default_rng(0); legacy = np.random.RandomState(0); r = random.Random(0)\n"
        "al = (rng, legacy, r)",
        "a = (float(rng.random()), float(legacy.rand()), r.random())",
        "b = (float(rng.random()), float(legacy.rand()), r.random())",
        "(a, b, al[0] is rng, al[1] is legacy, al[2] is r)",
        ((0.6369616873214543, 0.5488135039273248, 0.8444218515250481),
         (0.2697867137638703, 0.7151893663724195, 0.7579544029403025), True, True, True)),
    # 5. process state
    "working directory": ("", "os.chdir('/tmp')", "", "os.getcwd()", "/tmp"),
    "environment and %env": (
        "os.environ['NBT_GONE'] = '1'",
        "os.environ['NBT_SET'] = 'a'\n%env NBT_ENV=b\ndel os.environ['NBT_GONE']", "",
        "(os.environ.get('NBT_SET'), os.environ.get('NBT_ENV'), 'NBT_GONE' in os.environ)", ("a", "b", False)),
    "sys.path": ("", "sys.path.insert(0, '/nbt-added')", "", "sys.path[0]", "/nbt-added"),
    "pandas and numpy options, rcParams, a warnings filter": (
        """
        import matplotlib, warnings
        pd.reset_option('display.max_rows'); np.set_printoptions(precision=8)
        matplotlib.rcParams['lines.linewidth'] = 1.5
        warnings.filters[:] = [f for f in warnings.filters if not (f[1] and f[1].pattern == 'nbt-test')]
        """, """
        pd.set_option('display.max_rows', 7)
        np.set_printoptions(precision=3)
        matplotlib.rcParams['lines.linewidth'] = 5
        warnings.filterwarnings('ignore', message='nbt-test')
        """, "",
        "(pd.get_option('display.max_rows'), np.get_printoptions()['precision'],"
        " matplotlib.rcParams['lines.linewidth'], warnings.filters[0][1].pattern)", (7, 3, 5.0, "nbt-test")),
    "new imports": (
        "", "import xml.dom.minidom\nfrom fractions import Fraction", "",
        "('xml.dom.minidom' in sys.modules, str(Fraction(1, 3)), xml.dom.minidom.__name__)",
        (True, "1/3", "xml.dom.minidom")),
}


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    assert k.run("%load_ext nbtimeout").status == "ok"
    yield k
    k.shutdown()


@pytest.mark.parametrize("case", list(CASES))
def test_same_answer_as_without_the_magic(kernel, case):
    setup, body, after, probe, expected = CASES[case]
    plain, forked, warning = both(kernel, setup, body, after, probe)
    assert plain == expected  # the case itself says what a kernel does
    assert forked == plain
    assert warning == ""


# --- what cannot come back is named, and loses only itself --------------------------------------

def test_value_that_does_not_unpickle_loses_only_itself(kernel):
    warning = run_ok(kernel, FORK + cell("""
        class TwoArgs(Exception):
            def __init__(self, a, b):
                super().__init__(a)
        err = TwoArgs(1, 2)
        fine = 1
    """))
    assert warning.count("\n") == 1, warning
    assert "err" in warning, warning
    assert "TwoArgs" in warning, warning
    assert kernel.value("(fine, 'err' in globals(), 'TwoArgs' in globals())") == (1, False, True)


def test_unpicklable_object_the_cell_mutated_is_named(kernel):
    run_ok(kernel, "import threading\nholder = {}\nother = []")
    warning = run_ok(kernel, FORK + "holder['lock'] = threading.Lock()\nother.append(1)")
    assert warning.count("\n") == 1, warning
    assert "holder" in warning, warning
    assert "lock" in warning, warning
    assert kernel.value("(holder, other)") == ({}, [1])


def test_generator_is_named_and_the_rest_arrives(kernel):
    warning = run_ok(kernel, FORK + "gen = (i for i in range(3))\nalso = 2")
    assert "gen (generator" in warning, warning
    assert kernel.value("(also, 'gen' in globals())") == (2, False)


def test_generator_the_cell_advanced_is_named(kernel):
    run_ok(kernel, "counter = iter(range(10))\nsquares = (i * i for i in range(10))")
    warning = run_ok(kernel, FORK + "first = next(squares)\nalso = next(counter)")
    assert warning.count("\n") == 1, warning
    assert "squares (generator" in warning, warning
    assert kernel.value("(first, also, next(counter))") == (0, 0, 1)  # a list iterator does come back


def test_cells_unpicklable_value_is_a_result_error_and_names_still_arrive(kernel):
    result = kernel.run(FORK + "import threading\nset_before = 1\nthreading.Lock()")
    assert (result.status, result.ename) == ("error", "CellResultError"), result.traceback
    assert "lock" in result.evalue
    assert kernel.value("set_before") == 1


def test_array_that_changes_shape_loses_identity_and_says_so(kernel):
    run_ok(kernel, "import numpy as np\nAR = np.zeros(3); AR_alias = AR")
    warning = run_ok(kernel, FORK + "AR.resize(5, refcheck=False)\nAR[4] = 1")
    assert "identity lost for: AR" in warning, warning
    assert kernel.value("(AR.tolist(), AR_alias is AR)") == ([0.0, 0.0, 0.0, 0.0, 1.0], True)


def test_what_cannot_come_back_is_named_in_one_line(kernel):
    run_ok(kernel, "%matplotlib inline\nimport matplotlib, matplotlib.pyplot as plt, threading, time")
    warning = run_ok(kernel, FORK + cell("""
        %load_ext autoreload
        plt.switch_backend('agg')
        plt.rcParams['lines.linewidth'] = 7
        t = threading.Thread(target=time.sleep, args=(30,), name='sleeper', daemon=True); t.start()
    """))
    assert warning.count("\n") == 1, warning
    assert "matplotlib backend" in warning, warning
    assert "sleeper" in warning, warning
    assert "%load_ext autoreload" in warning, warning
    assert kernel.value("(matplotlib.rcParams['lines.linewidth'], 'inline' in matplotlib.get_backend())") == (
        7.0, True)


# --- the API: a value that cannot travel is an error, never a stand-in ---------------------------

@pytest.mark.parametrize(("make", "named"), [
    ("threading.Lock()", "lock"),
    ("(i for i in range(3))", "generator"),
    ("TwoArgsErr(1, 2)", "TwoArgsErr"),
])
def test_api_value_that_cannot_travel_is_a_cell_result_error(kernel, make, named):
    run_ok(kernel, cell(f"""
        import threading, nbtimeout
        class TwoArgsErr(Exception):
            def __init__(self, a, b):
                super().__init__(a)
        @nbtimeout.timeout(5, mode='fork')
        def make():
            return {make}
        try:
            make()
        except nbtimeout.CellResultError as e:
            caught = (type(e).__name__, isinstance(e, TypeError), str(e))
    """))
    kind, is_type_error, message = kernel.value("caught")
    assert (kind, is_type_error) == ("CellResultError", True)
    assert named in message, message


# --- nbtimeout's own work does not count against the limit --------------------------------------

def test_snapshot_of_a_large_namespace_does_not_count(kernel):
    run_ok(kernel, "many = [{'i': [i]} for i in range(150_000)]")
    timing = kernel.run(cell("""
        import random, time
        from nbtimeout._fork.sync import Snapshot
        t0 = time.perf_counter()
        Snapshot.take(globals(), set(), [compile('many', 'x', 'eval')], get_ipython(), random.getstate())
        snapshot_seconds = time.perf_counter() - t0
    """))
    assert timing.status == "ok", timing.traceback
    seconds = kernel.value("snapshot_seconds")
    limit = max(0.05, seconds / 4)  # the snapshot alone takes four times the limit
    result = kernel.run(f"%%timeout {limit:.3f} -m fork\nn = len(many)\nmany[0]['i'].append(1)")
    assert result.status == "ok", result.traceback
    assert kernel.value("(n, many[0])") == (150_000, {"i": [0, 1]})


def test_pickling_the_changes_does_not_count(kernel):
    run_ok(kernel, cell("""
        import time
        class SlowToPickle:
            def __reduce__(self):
                time.sleep(0.3)  # pickled twice in the child (once to prove it unpickles)
                return SlowToPickle, ()
    """))
    result = kernel.run("%%timeout 0.2 -m fork\nslow = SlowToPickle()")
    assert result.status == "ok", result.traceback
    assert kernel.value("type(slow).__name__") == "SlowToPickle"


def test_the_limit_still_counts_the_body(kernel):
    result = kernel.run("%%timeout 0.2 -m fork\nimport time\ntime.sleep(5)")
    assert result.ename == "CellTimeoutError"


def test_reading_a_large_dataframe_costs_nothing_against_the_limit(kernel):
    run_ok(kernel, cell("""
        import numpy as np, pandas as pd
        rows = 1_000_000
        wide = pd.DataFrame({"i": np.arange(rows), "f": np.ones(rows), "s": ["abc"] * rows})
        arr = np.ones(10_000_000)
    """))
    result = kernel.run("%%timeout 0.5 -m fork\nz = len(wide) + arr.size")
    assert result.status == "ok", result.traceback
    assert result.stream("stderr") == ""
    result = kernel.run("%%timeout 5 -m fork\nwide.loc[3, 's'] = 'changed'\narr[7] = 2")
    assert result.status == "ok", result.traceback
    assert kernel.value("(z, wide.loc[3, 's'], float(arr.sum()))") == (11_000_000, "changed", 10_000_001.0)
    run_ok(kernel, "del wide, arr")


def test_a_librarys_own_thread_is_not_a_warning(kernel):
    pytest.importorskip("tqdm")  # its monitor thread starts in the child and stops with it
    result = kernel.run(FORK + "from tqdm import tqdm\ntotal = sum(tqdm(range(1000), mininterval=0))")
    assert result.status == "ok", result.traceback
    assert "nbtimeout:" not in result.stream("stderr")
    assert kernel.value("total") == 499500
