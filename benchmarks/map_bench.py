"""nbtimeout.map against pebble.ProcessPool with per-task timeouts (issue 6). Not a test.

    python benchmarks/map_bench.py [--repeat 3]

Prints the wall time of 100 tasks of 20 ms on 2 workers against the ideal (sum / workers), and
what one stopped task costs beyond its limit.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import nbtimeout

TASKS, TASK_SECONDS, WORKERS, LIMIT, STOP_LIMIT = 100, 0.02, 2, 5.0, 0.2


def sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def run_nbtimeout(items: list[float], limit: float) -> None:
    nbtimeout.map(sleep_task, items, timeout=limit, workers=WORKERS)


def run_pebble(items: list[float], limit: float) -> None:
    from concurrent.futures import TimeoutError as FutureTimeout

    import pebble

    with pebble.ProcessPool(max_workers=WORKERS, context=_fork()) as pool:
        futures = [pool.schedule(sleep_task, args=(x,), timeout=limit) for x in items]
        for future in futures:
            try:
                future.result()
            except FutureTimeout:
                pass


def _fork():
    import multiprocessing

    return multiprocessing.get_context("fork")  # like nbtimeout: no pickling of the function


IDEAL = TASKS * TASK_SECONDS / WORKERS


def cases() -> dict[str, Callable[[], float]]:
    """For benchmarks/run.py: name -> one measurement of the sweep's wall time."""
    def wall(run: Callable[[list[float], float], None]) -> Callable[[], float]:
        def measure() -> float:
            started = time.perf_counter()
            run([TASK_SECONDS] * TASKS, LIMIT)
            return time.perf_counter() - started
        return measure

    return {"nbtimeout.map": wall(run_nbtimeout), "pebble.ProcessPool": wall(run_pebble)}


def best_of(repeat: int, run: Callable[[list[float], float], None], items: list[float],
            limit: float) -> tuple[float, float]:
    walls = []
    for _ in range(repeat):
        started = time.perf_counter()
        run(items, limit)
        walls.append(time.perf_counter() - started)
    return min(walls), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    ideal = IDEAL
    print(f"{TASKS} tasks x {TASK_SECONDS * 1000:.0f} ms on {WORKERS} workers; ideal {ideal:.3f} s;"
          f" best and median of {repeat}")
    print(f"{'':22} {'best s':>8} {'median s':>9} {'vs ideal':>9}")
    for name, run in (("nbtimeout.map", run_nbtimeout), ("pebble.ProcessPool", run_pebble)):
        best, median = best_of(repeat, run, [TASK_SECONDS] * TASKS, LIMIT)
        print(f"{name:22} {best:8.3f} {median:9.3f} {best / ideal - 1:+9.1%}")
    print(f"\none task that never ends, {STOP_LIMIT * 1000:.0f} ms limit: wall time beyond the limit")
    for name, run in (("nbtimeout.map", run_nbtimeout), ("pebble.ProcessPool", run_pebble)):
        best, median = best_of(repeat, run, [60.0], STOP_LIMIT)
        extra, typical = (best - STOP_LIMIT) * 1000, (median - STOP_LIMIT) * 1000
        print(f"{name:22} {extra:7.1f} ms (median {typical:.1f} ms)")


if __name__ == "__main__":
    main()
