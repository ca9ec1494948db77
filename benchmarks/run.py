"""Measure nbtimeout against the raw limits and the peers, interleaved, in one run.

    python benchmarks/run.py            # full run; writes docs/benchmarks.md
    python benchmarks/run.py --quick    # reduced set, under two minutes; prints the table

Every case is measured once per round and the rounds are interleaved, so slow drift of the machine
hits all cases alike. Each row: median, min–max, and the ratio to its raw baseline of the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _cases  # noqa: E402

# what each group's ratio means, and the target
TARGETS = {
    "call that returns at once": ("time / raw", "signal ≤ 1.3×, fork ≤ 1.5×"),
    "abort latency past a 100 ms deadline": ("latency / raw", "≤ 1.5×"),
    "fork call with a large parent": ("time / raw", "≤ 1.2× at 1 GB"),
    "256 MB numpy array back from a fork call": ("throughput / raw", "≥ 0.5×"),
    "print in the child → parent": ("latency / raw", ""),
    "cell through a real kernel": ("time / plain cell", "≤ 1.1×"),
    "fork cell that only reads large data": ("time / trivial fork cell, empty namespace", "≤ 0.3 s"),
    "fork cell that touches one item of a big namespace": ("time / trivial fork cell, empty namespace", "≤ 2×"),
    "map: 100 × 20 ms tasks, 2 workers": ("ideal / wall", "≥ 0.85×, not slower than pebble"),
    "map on Dask: 2-worker LocalCluster": ("time / plain Dask", "≤ 1.25× for the 200 × 20 ms sweep"),
}


def interleave(cases: dict, rounds: int) -> dict[str, list[float]]:
    """Run every case once per round; name -> measurements."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, measure in cases.items():
            results[name].append(measure())
    return results


def fmt(value: float, unit: str) -> str:
    if unit == "B/s":
        return f"{value / 2**30:.2f} GiB/s"
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.3f} s"


def rows_for(group: str, data: dict[str, list[float]], baselines: dict[str, str], unit: str = "s") -> list[tuple]:
    rows = []
    for name, values in data.items():
        median = statistics.median(values)
        base = baselines.get(name, "")
        ratio = ""
        if base:
            ref = statistics.median(data[base])
            ratio = f"{median / ref:.2f}×"
        spread = f"{fmt(min(values), unit)} – {fmt(max(values), unit)}"
        rows.append((group, name, fmt(median, unit), spread, ratio or "baseline"))
    return rows


def bench_calls(rounds: int) -> list[tuple]:
    calls = _cases.quick_calls()
    cases = {n: (lambda c=c, b=b: _cases.per_call(c, b)) for n, (_, c, b) in calls.items()}
    return rows_for("call that returns at once", interleave(cases, rounds), {n: v[0] for n, v in calls.items()})


def bench_abort(rounds: int) -> list[tuple]:
    cases = _cases.abort_cases()
    data = interleave({n: m for n, (_, m) in cases.items()}, rounds)
    rows = rows_for("abort latency past a 100 ms deadline", data, {n: v[0] for n, v in cases.items()})
    rows.append(("abort latency past a 100 ms deadline", "any signal-based tool, C loop",
                 "never (runs until the C call returns)", "", "—"))
    return rows


def bench_large_parent(rounds: int, sizes: list[int]) -> list[tuple]:
    import nbtimeout

    rows = []
    answer = nbtimeout.timeout(30, mode="fork")(lambda: 42)
    for size in sizes:
        ballast = _cases.ballast(size)
        label = f"{size >> 20} MB" if size < 1 << 30 else f"{size >> 30} GB"
        cases = {f"raw fork + pipe, parent +{label}": lambda: _cases.per_call(_cases._raw.fork_round_trip, 5),
                 f"nbtimeout fork, parent +{label}": lambda: _cases.per_call(answer, 5)}
        data = interleave(cases, rounds)
        names = list(cases)
        rows += rows_for("fork call with a large parent", data, {names[1]: names[0]})
        del ballast
    return rows


def bench_transfer(rounds: int) -> list[tuple]:
    cases = {"raw pipe": _cases.raw_throughput, "nbtimeout fork": _cases.nbtimeout_throughput,
             "pebble concurrent.process": _cases.pebble_throughput}
    data = interleave(cases, rounds)
    return rows_for("256 MB numpy array back from a fork call", data,
                    {"nbtimeout fork": "raw pipe", "pebble concurrent.process": "raw pipe"},
                    unit="B/s")


def bench_print(rounds: int) -> list[tuple]:
    cases = {"raw pipe write": _cases.raw_print_latency, "nbtimeout fork print": _cases.nbtimeout_print_latency}
    return rows_for("print in the child → parent", interleave(cases, rounds),
                    {"nbtimeout fork print": "raw pipe write"})


def bench_kernel(rounds: int, cells: int) -> list[tuple]:
    sys.path.insert(0, str(ROOT / "tests"))
    from kernelclient import Kernel

    kernel = Kernel()
    try:
        assert kernel.run("%load_ext nbtimeout").status == "ok"

        def timed(code: str) -> float:
            start = time.perf_counter()
            for _ in range(cells):
                assert kernel.run(code).status == "ok"
            return (time.perf_counter() - start) / cells

        cases = {"plain cell": lambda: timed("x = 1"),
                 "%%capture cell (IPython's own cell magic, for scale)": lambda: timed("%%capture\nx = 1"),
                 "%%timeout 5 -q cell": lambda: timed("%%timeout 5 -q\nx = 1"),
                 "%%timeout 5 cell (widget)": lambda: timed("%%timeout 5\nx = 1"),
                 "%%timeout 5 -q -m fork cell": lambda: timed("%%timeout 5 -q -m fork\nx = 1")}
        data = interleave(cases, rounds)
    finally:
        kernel.shutdown()
    return rows_for("cell through a real kernel", data, {n: "plain cell" for n in cases if n != "plain cell"})


def bench_large_namespace(rounds: int, cells: int) -> list[tuple]:
    """A fork cell that only reads a 5M-row DataFrame (int, float, str) and a 200 MB array."""
    sys.path.insert(0, str(ROOT / "tests"))
    from kernelclient import Kernel

    empty, loaded = Kernel(), Kernel()
    try:
        for kernel in (empty, loaded):
            assert kernel.run("%load_ext nbtimeout").status == "ok"
        assert loaded.run(_cases.LARGE_NAMESPACE, timeout=300).status == "ok"

        def timed(kernel, code: str) -> float:
            start = time.perf_counter()
            for _ in range(cells):
                assert kernel.run(code).status == "ok"
            return (time.perf_counter() - start) / cells

        base = "trivial fork cell, empty namespace"
        cases = {base: lambda: timed(empty, "%%timeout 60 -q -m fork\nz = 1"),
                 "z = len(bigdf) + arr.size, fork cell": lambda: timed(loaded, _cases.READS_LARGE),
                 "z = len(bigdf) + arr.size, plain cell (for scale)":
                     lambda: timed(loaded, _cases.READS_LARGE.split("\n", 1)[1])}
        data = interleave(cases, rounds)
    finally:
        empty.shutdown()
        loaded.shutdown()
    return rows_for("fork cell that only reads large data", data, {n: base for n in cases if n != base})


def bench_fork_touch(rounds: int, quick: bool) -> list[tuple]:
    """Fork cells that read or change one item while the kernel holds big containers (issue 22)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from kernelclient import Kernel

    scale = 10 if quick else 1
    empty, loaded = Kernel(), Kernel()
    try:
        for kernel in (empty, loaded):
            assert kernel.run("%load_ext nbtimeout").status == "ok"
        assert loaded.run(_cases.touch_namespace(scale), timeout=600).status == "ok"

        def timed(kernel, code: str) -> float:
            start = time.perf_counter()
            result = kernel.run(code, timeout=600)
            assert result.status == "ok", result.traceback
            return time.perf_counter() - start

        fork = "%%timeout 600 -q -m fork\n"
        base = "trivial fork cell, empty namespace"
        cases = {base: lambda: timed(empty, fork + "z = 1")}
        for label, code in _cases.touch_cells(scale).items():
            cases[f"{label}, fork cell"] = lambda code=code: timed(loaded, fork + code)
        cases["flag every record (alias first = records[0]), plain cell (for scale)"] = \
            lambda: timed(loaded, _cases.touch_cells(scale)["flag every record (alias first = records[0])"])
        data = interleave(cases, rounds)
    finally:
        empty.shutdown()
        loaded.shutdown()
    return rows_for("fork cell that touches one item of a big namespace", data, {n: base for n in cases if n != base})


def bench_map(rounds: int) -> list[tuple]:
    try:
        from benchmarks import map_bench
    except ImportError:
        return [("map: 100 × 20 ms tasks, 2 workers", "nbtimeout.map", "not available", "", "")]
    cases = map_bench.cases()
    data = interleave(cases, rounds)
    rows = []
    for name, values in data.items():
        median = statistics.median(values)
        rows.append(("map: 100 × 20 ms tasks, 2 workers", name, fmt(median, "s"),
                     f"{fmt(min(values), 's')} – {fmt(max(values), 's')}", f"{map_bench.IDEAL / median:.2f}×"))
    return rows


def bench_dask(rounds: int) -> list[tuple]:
    """nbtimeout.map(executor=client) against plain client.map, and the cost of a stopped task."""
    group = "map on Dask: 2-worker LocalCluster"
    try:
        from benchmarks import dask_bench
    except ImportError:
        return [(group, "nbtimeout.map(executor=client)", "distributed not installed", "", "")]
    with dask_bench.cluster() as client:
        cases = dask_bench.cases(client)
        data = interleave({name: measure for name, (_, measure) in cases.items()}, rounds)
    return rows_for(group, data, {name: base for name, (base, _) in cases.items() if base})


def table(rows: list[tuple]) -> str:
    lines = []
    group = None
    for row in rows:
        if row[0] != group:
            group = row[0]
            meaning, target = TARGETS.get(group, ("", ""))
            lines += ["", f"### {group}", "", f"ratio: {meaning}" + (f"; target {target}" if target else ""), "",
                      "| case | median | min – max | ratio |", "|---|---|---|---|"]
        lines.append(f"| {row[1]} | {row[2]} | {row[3]} | {row[4]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced set, under two minutes")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    sizes = [50 << 20] if args.quick else [50 << 20, 1 << 30]
    started = time.time()
    rows = (bench_calls(rounds) + bench_abort(rounds) + bench_print(rounds) + bench_transfer(2 if args.quick else 5)
            + bench_large_parent(rounds, sizes) + bench_kernel(rounds, 5 if args.quick else 20)
            + bench_large_namespace(rounds, 3 if args.quick else 5)
            + bench_fork_touch(2 if args.quick else 3, args.quick)
            + bench_map(1 if args.quick else 3) + bench_dask(1 if args.quick else 3))
    body = table(rows)
    head = (f"# Benchmarks\n\n`python benchmarks/run.py{' --quick' if args.quick else ''}` on {platform.node()}: "
            f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
            f"{__import__('os').cpu_count()} cores, {time.strftime('%Y-%m-%d')}; {rounds} interleaved rounds, "
            f"{time.time() - started:.0f} s in all.\n")
    print(head + body)
    if not args.quick:
        Path(args.output).write_text(head + body + "\n")


if __name__ == "__main__":
    main()
