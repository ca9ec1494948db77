"""Same cell, with and without the limit: the differential runner (issue 21).

Each notebook of the corpus (diffcorpus) runs cell by cell in a fresh plain kernel (nbtimeout not
loaded) and, in lockstep, in one fresh kernel per engine under ``%timeout 600 -m <engine>``. After
every cell each kernel reports its namespace (diffprobe, as a user expression: no history, no
``Out``), and what a front end saw is compared (diffcompare). Every difference is put in a class of
diffknown or counts as unknown.

From the command line, for longer runs by hand::

    python -m tests.diffrun --engine fork --modules json,re,numpy:500
    python -m tests.diffrun --engine signal,thread --default --show 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # as ``python -m tests.diffrun``: kernelclient et al.

import diffcompare
import diffcorpus
import diffknown
from kernelclient import Kernel

ENGINES = ("signal", "thread", "fork")
PROBE = "nbtimeout_diffprobe"
STATE = f"__import__('sys').modules[{PROBE!r}].state()"
INSTALL = (
    "import sys as _dp_sys, types as _dp_types\n"
    f"_dp_mod = _dp_types.ModuleType({PROBE!r})\n"
    "exec({source!r}, _dp_mod.__dict__)\n"
    "_dp_sys.modules[_dp_mod.__name__] = _dp_mod\n"
    "del _dp_sys, _dp_types, _dp_mod\n"
)
CELL_TIMEOUT = 120  # a cell of the corpus that takes longer ends its notebook (recorded as a hang)


class Side:
    """One kernel of a notebook's run: plain (``engine`` None) or under ``%timeout 600 -m engine``."""

    def __init__(self, book: diffcorpus.Notebook, engine: str | None) -> None:
        self.engine = engine
        self.folder = tempfile.mkdtemp(prefix="nbt-diff-")
        self.kernel = Kernel(extra_env={"PYTHONHASHSEED": "0"})
        self.norm = diffcompare.Normaliser(self.folder)
        self.seconds = 0.0  # time the kernel was busy with the corpus's cells (its own clock)
        self.last: list[tuple[str, Any, Any]] = []  # differences after the previous reported cell
        self.silent(INSTALL.format(source=(Path(__file__).parent / "diffprobe.py").read_text()))
        probe = f"__import__('sys').modules[{PROBE!r}]"
        self.silent(f"{probe}.setup({book.module!r}, {book.extras!r}, {self.folder!r})")
        if engine is not None:
            self.silent("%load_ext nbtimeout")
            self.silent(f"%timeout 600 -m {engine}")

    @property
    def label(self) -> str:
        return self.engine or "plain"

    def silent(self, code: str) -> None:
        msg_id = self.kernel.client.execute(code, silent=True, allow_stdin=False)
        result = self.kernel._collect(msg_id, code, 60)
        if result.status != "ok":
            raise RuntimeError(f"setup of the {self.label} kernel failed: {code[:80]!r}: {result.traceback}")

    def send(self, cell: str) -> str:
        return self.kernel.client.execute(cell, allow_stdin=False, user_expressions={"state": STATE})

    def collect(self, msg_id: str, cell: str) -> dict[str, Any]:
        """The view of the cell sent as ``msg_id``, once its kernel is idle."""
        times: dict[str, Any] = {}

        def clock(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "status":
                times[msg["content"]["execution_state"]] = msg["header"]["date"]

        result = self.kernel._collect(msg_id, cell, CELL_TIMEOUT, clock)
        if "busy" in times and "idle" in times:
            self.seconds += (times["idle"] - times["busy"]).total_seconds()
        return diffcompare.view(result, diffcompare.parse_state(result.reply), self.norm)

    def close(self) -> None:
        self.kernel.shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Run:
    """The differences found, the cells compared, and each side's busy time, over all notebooks."""

    differences: list[diffcompare.Difference] = field(default_factory=list)
    cells: dict[str, int] = field(default_factory=dict)  # engine -> cells compared
    notebooks: dict[str, int] = field(default_factory=dict)  # engine -> notebooks compared
    seconds: dict[str, float] = field(default_factory=dict)  # side -> kernel busy time
    skipped: dict[str, int] = field(default_factory=dict)  # rule -> examples left out
    wall: float = 0.0


def run_notebook(book: diffcorpus.Notebook, engines: list[str], run: Run) -> None:
    """Run ``book`` plain and under each engine, in lockstep; add what differs to ``run``."""
    sides = [Side(book, None)]
    try:
        sides += [Side(book, engine) for engine in engines]
        for index, cell in enumerate(book.cells):
            sent = [(side, side.send(cell)) for side in sides]
            try:
                views = [side.collect(msg_id, cell) for side, msg_id in sent]
            except TimeoutError:
                for engine in engines:
                    run.differences.append(diffcompare.Difference(book.name, index, cell, engine, "hang", None, None))
                break
            for side, seen in zip(sides[1:], views[1:], strict=True):
                found = diffcompare.compare(views[0], seen)
                for aspect, plain, limited in found:
                    # A name that differs as it did after the previous cell is that cell's difference.
                    if aspect.startswith("name ") and (aspect, plain, limited) in side.last:
                        continue
                    run.differences.append(
                        diffcompare.Difference(book.name, index, cell, side.label, aspect, plain, limited))
                if views[0]["state"] is not None and seen["state"] is not None:
                    side.last = found
                run.cells[side.label] = run.cells.get(side.label, 0) + 1
        for side in sides:
            run.seconds[side.label] = run.seconds.get(side.label, 0.0) + side.seconds
            if side.engine:
                run.notebooks[side.label] = run.notebooks.get(side.label, 0) + 1
        for reason, count in book.skipped.items():
            run.skipped[reason] = run.skipped.get(reason, 0) + count
    finally:
        for side in sides:
            side.close()


def run_corpus(books: list[diffcorpus.Notebook], engines: list[str], progress: Any = None) -> Run:
    run = Run()
    start = time.monotonic()
    for book in books:
        run_notebook(book, engines, run)
        if progress is not None:
            progress(f"{book.name}: {len(book.cells)} cells, {time.monotonic() - start:.0f} s")
    run.wall = time.monotonic() - start
    return run


def _short(value: Any, width: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def report(run: Run, show: int = 1) -> tuple[str, list[diffknown.Classified]]:
    """The printed summary (a table of classes × engines) and the classified differences."""
    classified = diffknown.classify(run.differences)
    lines = [f"cells compared: {run.cells}, notebooks: {run.notebooks}, wall {run.wall:.0f} s",
             "kernel busy time: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(run.seconds.items())),
             f"examples left out: {run.skipped}", ""]
    table: dict[tuple[str, str], list[diffknown.Classified]] = {}
    for item in classified:
        table.setdefault((item.cls.name, item.difference.engine), []).append(item)
    lines.append(f"{'class':<42} {'engine':<7} {'cells':>5}  reason / example")
    for (name, engine), items in sorted(table.items()):
        cls = items[0].cls
        cells = len({(i.difference.notebook, i.difference.index) for i in items})
        lines.append(f"{name:<42} {engine:<7} {cells:>5}  {cls.reason}")
        for item in items[:show]:
            d = item.difference
            lines.append(f"{'':<56}  {d.notebook}[{d.index}] {d.aspect}: {_short(d.cell, 60)}")
            lines.append(f"{'':<56}    plain {_short(d.plain)}  limited {_short(d.limited)}")
    seen = {name for name, _ in table}
    stale = [cls.name for cls in diffknown.KNOWN if cls.name not in seen]
    if stale:
        lines.append(f"\nknown classes not seen in this run (fixed, or not in this corpus): {', '.join(stale)}")
    return "\n".join(lines), classified


def _modules(text: str) -> list[tuple[str, int | None]]:
    """``json,numpy:500`` -> [("json", None), ("numpy", 500)]."""
    out = []
    for part in filter(None, text.split(",")):
        name, _, cap = part.partition(":")
        out.append((name, int(cap) if cap else None))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.diffrun", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default=",".join(ENGINES), help="comma-separated: signal,thread,fork")
    parser.add_argument("--modules", default="", help="comma-separated modules, each with :cap if wanted; "
                                                      "'ipython-syntax' for the hand-written notebook")
    parser.add_argument("--default", action="store_true", help="the default corpus (what the test runs)")
    parser.add_argument("--show", type=int, default=1, help="examples shown per class and engine")
    parser.add_argument("--cap", type=int, help="at most about this many cells per module (a quick sample)")
    parser.add_argument("--dump", help="write every difference, classified, to this JSON file")
    args = parser.parse_args(argv)
    engines = [e for e in args.engine.split(",") if e]
    names = _modules(args.modules)
    if args.default or not names:
        names = [*diffcorpus.DEFAULT, ("ipython-syntax", None), *names]
    if args.cap:
        names = [(name, min(cap or args.cap, args.cap)) for name, cap in names]
    books = diffcorpus.notebooks(names)
    run = run_corpus(books, engines, progress=lambda line: print(line, flush=True))
    text, classified = report(run, args.show)
    print(text)
    if args.dump:
        import json

        rows = [{**vars(item.difference), "class": item.cls.name} for item in classified]
        Path(args.dump).write_text(json.dumps(rows, indent=1, default=repr))
    return 1 if any(item.cls is diffknown.UNKNOWN for item in classified) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
