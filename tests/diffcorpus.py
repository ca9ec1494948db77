"""The differential runner's corpus: code nobody here wrote, read at test time from what is installed.

Each module is one notebook; each doctest example in its docstrings (``doctest.DocTestFinder``, in
the order the finder gives) is one cell, run in a namespace holding the module's globals as doctest
gives them. Examples that cannot give the same answer twice (random numbers, clocks, ids, hashes,
files in a shared place) or that act on the kernel process itself (exit, signals, threads, stdin,
the network) are left out by reading their source; the runner reports how many each rule left out.
``IPYTHON`` is the one notebook written here: IPython's own syntax (magics, ``!``, ``;``, ``?``,
top-level ``await``), which no doctest has.
"""

from __future__ import annotations

import doctest
import importlib
import io
import re
import warnings
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field

# What each rule leaves out, and why: a cell must behave the same in two kernels run side by side.
SKIP_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("random", re.compile(r"random|\brand[niu]?\w*\(|default_rng|RandomState|shuffle|\bsample\(|secrets|urandom|uuid")),
    ("clock", re.compile(r"\btime\b|\bsleep\b|\bnow\(|today\(|perf_counter|monotonic|timeit|process_time|"
                         r"utcnow|localtime|gmtime|date\.today|Timestamp\(['\"]now")),
    ("identity or memory", re.compile(r"\bid\(|\bhash\(|getrefcount|getsizeof|memory_usage|__sizeof__|"
                                      r"\bgc\.|weakref|\.ctypes|__array_interface__|\.data\b")),
    ("process-wide or harmful", re.compile(
        r"\bexit\(|\bquit\(|os\._exit|os\.kill|\bsignal\.(signal|alarm|setitimer|pthread_kill|raise_signal)|settrace|setprofile|sys\.std(out|err|in)\s*=|"
        r"\binput\(|breakpoint|\bpdb\b|set_trace|\bchdir\b|os\.fork|\bthreading\b|\bsocket\b|urlopen|"
        r"http\.client|webbrowser|serve|multiprocessing|Popen|smtplib|ftplib|os\.system|setrecursionlimit|"
        r"faulthandler|\bresource\.|getpid|environ|putenv|\bsys\.path\b|importlib\.reload|"
        r"getpass|nntplib|telnetlib|poplib|sys\.modules")),
    ("shared path", re.compile(r"['\"](/tmp|/var|/home|~)|tempfile|mkdtemp|mkstemp|gettempdir|TemporaryDirectory")),
]

# Modules whose doctests expect names their test runners provide.
EXTRAS = {"numpy": {"np": "numpy"}, "pandas": {"pd": "pandas", "np": "numpy"}}

# The default corpus: (module, most examples taken). Stdlib modules with the most doctest examples,
# plus numpy's and pandas' big ones; the caps keep one CI run of all three engines to minutes.
DEFAULT: list[tuple[str, int]] = [
    ("pickletools", 150), ("statistics", 150), ("difflib", 150), ("doctest", 150), ("collections", 150),
    ("builtins", 150), ("zipfile", 150), ("json", 150), ("typing", 150), ("http.cookies", 150),
    ("enum", 150), ("pickle", 150), ("fractions", 150), ("_pydecimal", 150), ("hashlib", 150),
    ("importlib.metadata", 150), ("test.test_generators", 300), ("test.test_descrtut", 150),
    ("numpy", 300), ("numpy.linalg", 150), ("numpy.fft", 110), ("numpy.ma.core", 200),
    ("numpy.polynomial.polynomial", 130), ("numpy.strings", 140), ("numpy.lib.recfunctions", 100),
    ("pandas", 250), ("pandas.core.generic", 200), ("pandas.core.strings.accessor", 150),
    ("pandas.api.types", 150), ("pandas.core.groupby.groupby", 150),
]


@dataclass
class Notebook:
    """One module's cells, the names its examples expect, and what was left out by which rule."""

    name: str
    cells: list[str]
    extras: dict[str, str] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    module: str | None = None  # whose globals the notebook starts with (None: an empty one)


def skip_reason(source: str, options: dict[int, bool]) -> str | None:
    """Why an example is left out, or None to run it."""
    if options.get(doctest.SKIP):
        return "doctest +SKIP"
    for reason, rule in SKIP_RULES:
        if rule.search(source):
            return reason
    return None


def doctest_notebook(module: str, cap: int | None = None) -> Notebook | None:
    """The notebook of ``module``'s doctest examples (at most about ``cap``: whole docstrings are
    kept together, their examples depend on each other), or None if it cannot be imported here."""
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            tests = doctest.DocTestFinder().find(importlib.import_module(module))
    except Exception:  # not installed in this Python (the ``test`` package is optional)
        return None
    top = module.split(".")[0]
    book = Notebook(module, [], dict(EXTRAS.get(top, {})), module=module)
    for test in tests:
        if cap is not None and len(book.cells) >= cap:
            break
        for example in test.examples:
            reason = skip_reason(example.source, example.options)
            if reason is None:
                book.cells.append(example.source)
            else:
                book.skipped[reason] += 1
    return book


IPYTHON = [
    "x = 1 + 1", "x", "x;", "1 + 1;", "print('printed');", "y = [x]\ny", "_", "__", "_i", "In[1]",
    "!echo hi", "files = !echo a b\nfiles", "!echo $x", "%env NBT_DIFF=1", "%env NBT_DIFF",
    "%who_ls", "len?", "x?", "import json\njson.dumps??", "%pinfo len",
    "%%capture cap\nprint('inside')\n1 + 1", "cap.stdout",
    "%%writefile note.txt\nhello", "open('note.txt').read()", "%%bash\necho from bash",
    "%%html\n<b>bold</b>", "%%markdown\n# title", "%%latex\n$x^2$", "%%javascript\nconsole.log(1)",
    "from IPython.display import display, HTML, Markdown\ndisplay(HTML('<i>i</i>'))\ndisplay(1, 2)",
    "HTML('<u>u</u>')", "%precision 3", "3.14159265", "%precision %r",
    "%xmode Minimal", "1/0", "%xmode Context", "1/0",
    "import asyncio\nawait asyncio.sleep(0.01)\n'awaited'",
    "async def agen():\n    for i in range(3):\n        yield i\n[i async for i in agen()]",
    "await asyncio.sleep(0)", "r = await asyncio.gather(asyncio.sleep(0, 'a'), asyncio.sleep(0, 'b'))\nr",
    "def f():\n    raise ValueError('from f')\nf()", "next(iter([]))",
    "def g():\n    yield 1\n    yield 2\ngen = g()\nnext(gen)", "next(gen)", "next(gen)",
    "import sys\nsys.exit(3)", "raise KeyboardInterrupt", "raise SystemExit",
    "import nonexistent_module_xyz", "def (:\n    pass", "  z = 1", "1 +",
    "input('q? ')", "import warnings\nwarnings.warn('careful')", "print('to stderr', file=sys.stderr)",
    "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]);", "plt.plot([1, 2])",
    "fig, ax = plt.subplots()\nax.set_title('t')\nplt.close(fig)\nfig",
    "class Conn:\n    def __del__(self):\n        print('del')\nc = Conn()\ndel c",
    "for i in range(3):\n    print(i)\n    display(i)",
    "a = b = []\na.append(1)", "a is b", "a", "del x", "x",
    "%config ZMQInteractiveShell.ast_node_interactivity = 'all'", "1\n2",
    "%config ZMQInteractiveShell.ast_node_interactivity = 'last_expr'",
    "%alias hello echo hello\n%hello", "%pwd", "exec('z = 5')\nz", "eval('z + 1')",
    "counter = 1\ndef bump():\n    global counter\n    counter += 1\nbump()\ncounter",
    "import contextlib\nwith contextlib.suppress(ZeroDivisionError):\n    1/0\n'suppressed'",
    "try:\n    1/0\nexcept:\n    print('caught')", "try:\n    raise ValueError('a')\nfinally:\n    print('finally')",
    "raise ValueError('a') from KeyError('b')",
    "try:\n    1/0\nexcept ZeroDivisionError:\n    raise TypeError('during')",
    "raise ExceptionGroup('g', [ValueError(1), TypeError(2)])", "%history -n -l 3",
    "%%python3\nprint('sub')", "lam = lambda: 1\nlam()", "import numpy as np\nnp.arange(3)",
    "import pandas as pd\npd.DataFrame({'a': [1, 2]})", "df = _\ndf['b'] = df.a * 2\ndf",
    "def rec(n):\n    return rec(n - 1) if n else 1 / n\nrec(3)", "q = 1", "q",
]


def ipython_notebook() -> Notebook:
    """IPython's own syntax, one cell each."""
    return Notebook("ipython-syntax", list(IPYTHON))


def notebooks(names: list[tuple[str, int | None]]) -> list[Notebook]:
    """The notebooks of ``names`` (``ipython-syntax`` is the hand-written one) that exist here."""
    books = []
    for name, cap in names:
        book = ipython_notebook() if name == "ipython-syntax" else doctest_notebook(name, cap)
        if book is not None and book.cells:
            books.append(book)
    return books
