"""Stops at unlucky moments (issue 21): programs that swallow, suspend, hold the GIL or print, each
stopped by a short ``%%timeout``, and what must hold after each stop.

``programs()`` is a hypothesis strategy of (family, cell body); ``FuzzKernel.stop(...)`` runs one
under a limit and returns the list of broken promises (empty when all hold): the cell ended within
limit + grace + 0.5 s (plus ``SLACK`` for a loaded machine), its status is ``error`` with a
CellTimeoutError (``ok`` with ``-c``), no nbtimeout frame is in its traceback, the next timed cell is
stopped on time, and no nbtimeout thread died nor did the watchdog record an error.

From the command line, for longer runs by hand::

    python -m tests.stopfuzz --engine signal --family bare-except --stops 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from diffrun import INSTALL, PROBE
from kernelclient import Kernel

GRACE = 0.1  # -g: a swallowed stop is repeated after this, then every 50 ms
SLACK = float(os.environ.get("NBTIMEOUT_FUZZ_SLACK", "0.5"))  # load on a shared two-core machine
NEXT = "%%timeout 0.05 -m {engine} -q\nwhile True:\n    pass"  # the next timed cell: stopped on time
THREADS = f"__import__('sys').modules[{PROBE!r}].threads()"

# One unit of work inside a loop: where the stop can land.
WORK = {
    "python": "sum(i * i for i in range(200))",
    "sleep": "time.sleep(0.002)",
    "print": "print('.', end='')",
    "c call": "sum(range(20000))",
    "regex": "re.match(r'(a+)+$', 'a' * 14 + 'b')",
    "alloc": "[object() for _ in range(300)]",
}
# Each family: a program built around {work}; the stop must end it whatever it catches.
FAMILIES = {
    "bare-except": "while True:\n    try:\n        {work}\n    except:\n        pass",
    "except-baseexception": "while True:\n    try:\n        {work}\n    except BaseException:\n        continue",
    "__del__": "class Conn:\n    def __del__(self):\n        {work}\nwhile True:\n    c = Conn()\n    del c",
    "finally": "while True:\n    try:\n        {work}\n    finally:\n        {work}",
    "finally-return": "def once():\n    try:\n        {work}\n    finally:\n        return\nwhile True:\n    once()",
    "suppress": "import contextlib\nwhile True:\n    with contextlib.suppress(BaseException):\n        {work}",
    "generator": "def gen():\n    while True:\n        {work}\n        yield\nfor _ in gen():\n    pass",
    "generator-swallows": ("def gen():\n    while True:\n        try:\n            {work}\n            yield\n"
                           "        except BaseException:\n            pass\nfor _ in gen():\n    pass"),
    "coroutine": ("import asyncio\nasync def work():\n    while True:\n        {work}\n"
                  "        await asyncio.sleep(0)\nawait work()"),
    "c-first": "re.match(r'(a+)+$', 'a' * {n} + 'b')\nprint('after the C call')",
    "c-loop": "while True:\n    sum(range({m}))",
    "prints": "i = 0\nwhile True:\n    print(i, 'x' * {width})\n    i += 1",
}


def build(family: str, integer: Any) -> dict[str, Any]:
    """One program of ``family``, every choice made by ``integer(low, high)``: its cell body, the
    limit (20-100 ms), ``-c`` or not, and how much plain Python runs first (so the stop lands at a
    different point of the loop each time). re, sys and time are imported in the kernel already."""
    works = sorted(WORK)
    work = WORK[works[integer(0, len(works) - 1)]]
    lead = integer(0, 30_000)  # iterations of a Python loop before the program
    body = FAMILIES[family].format(work=work, n=integer(20, 22), m=10 ** integer(5, 6), width=integer(1, 200))
    if lead and family != "c-first":  # c-first: the C call must stay the cell's first statement
        body = f"for _lead in range({lead}):\n    pass\n{body}"
    return {"family": family, "body": body, "limit": integer(20, 100) / 1000, "keep_going": bool(integer(0, 1))}


@st.composite
def programs(draw: Any, family: str) -> dict[str, Any]:
    """A hypothesis strategy of ``build(family, ...)``."""
    return build(family, lambda low, high: draw(st.integers(low, high)))


class FuzzKernel:
    """A kernel with nbtimeout loaded and the probe watching threads; restarted after a hang."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.kernel: Kernel | None = None
        self.stops = 0
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self.kernel = Kernel()
        source = (Path(__file__).parent / "diffprobe.py").read_text()
        for code in (INSTALL.format(source=source), "%load_ext nbtimeout",
                     f"__import__('sys').modules[{PROBE!r}].watch_threads()", "import re, sys, time"):
            assert self.kernel.run(code).status == "ok", code
        self.threads_before = self._threads()["alive"]

    def restart(self) -> None:
        self.kernel.shutdown()
        self.restarts += 1
        self._start()

    def _threads(self) -> dict[str, Any]:
        msg_id = self.kernel.client.execute("pass", allow_stdin=False, user_expressions={"t": THREADS})
        reply = self.kernel._collect(msg_id, "pass", 30).reply
        import ast

        return json.loads(ast.literal_eval(reply["user_expressions"]["t"]["data"]["text/plain"]))

    def timed(self, code: str, wait: float) -> tuple[Any, float]:
        """(Result, seconds the kernel was busy); TimeoutError after ``wait`` s."""
        times: dict[str, Any] = {}

        def clock(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "status":
                times[msg["content"]["execution_state"]] = msg["header"]["date"]

        result = self.kernel.run(code, timeout=wait, on_message=clock)
        return result, (times["idle"] - times["busy"]).total_seconds()

    def stop(self, program: dict[str, Any]) -> list[str]:
        """Run ``program`` under its limit; the promises it broke."""
        limit, keep = program["limit"], program["keep_going"]
        line = f"%%timeout {limit * 1000:g}ms -m {self.engine} -g {GRACE} -q" + (" -c" if keep else "")
        bound = limit + GRACE + 0.5 + SLACK
        self.stops += 1
        try:
            result, took = self.timed(f"{line}\n{program['body']}", wait=bound + 3)
        except TimeoutError:
            self.restart()
            return [f"hang: not ended {bound + 3:.1f} s after a {limit * 1000:g} ms limit"]
        broken = []
        if took > bound:
            broken.append(f"slow: ended after {took:.2f} s (bound {bound:.2f} s)")
        want = "ok" if keep else "error"
        if result.status != want:
            broken.append(f"status {result.status} ({result.ename}), wanted {want}")
        elif not keep and result.ename != "CellTimeoutError":
            broken.append(f"error {result.ename}: {result.evalue}, wanted CellTimeoutError")
        if "after the C call" in result.stream():
            broken.append("a line after the deadline ran (printed 'after the C call')")
        if "/nbtimeout/" in result.traceback:
            broken.append("nbtimeout frame in the traceback")
        try:
            after, took_next = self.timed(NEXT.format(engine=self.engine), wait=10)
        except TimeoutError:
            self.restart()
            return [*broken, "next timed cell not stopped within 10 s"]
        if after.status != "error" or took_next > 0.05 + 0.5 + SLACK:
            broken.append(f"next timed cell: {after.status} after {took_next:.2f} s")
        threads = self._threads()
        if threads["died"] or threads["errors"]:
            broken.append(f"nbtimeout threads died: {threads['died']}, watchdog errors: {threads['errors']}")
        lost = sorted(set(self.threads_before) - set(threads["alive"]))
        if lost:
            broken.append(f"nbtimeout threads gone: {lost}")
        if threads["died"] or threads["errors"] or lost:
            self.restart()  # so one broken thread is reported once, not by every later stop
        return broken

    def close(self) -> None:
        self.kernel.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stopfuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="signal", choices=("signal", "thread", "fork"))
    parser.add_argument("--family", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    parser.add_argument("--stops", type=int, default=50, help="stops per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import random

    rng = random.Random(args.seed)
    fuzz = FuzzKernel(args.engine)
    failed = 0
    try:
        for family in args.family.split(","):
            broken_count = 0
            for _ in range(args.stops):
                program = build(family, rng.randint)
                broken = fuzz.stop(program)
                if broken:
                    broken_count += 1
                    if broken_count <= 3:
                        print(f"{family}: {broken}\n    {program}", flush=True)
            print(f"{family}: {broken_count} of {args.stops} stops broke a promise", flush=True)
            failed += broken_count
    finally:
        fuzz.close()
    print(f"{fuzz.stops} stops, {fuzz.restarts} kernel restarts")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
