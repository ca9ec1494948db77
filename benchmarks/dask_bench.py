"""nbtimeout.map(executor=client) on a 2-worker LocalCluster against plain ``client.map`` (issue 15).

    python benchmarks/dask_bench.py [--rounds 3]

Prints the wall time of 200 tasks of 20 ms through both, and what a stopped task costs: one task
past a 200 ms limit, against a plain task that sleeps those 200 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import nbtimeout

TASKS, TASK_SECONDS, WORKERS, LIMIT, STOP_LIMIT = 200, 0.02, 2, 5.0, 0.2


def sleep_task(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@contextlib.contextmanager
def cluster() -> Iterator[Any]:
    """A Client on a LocalCluster of two single-threaded worker processes."""
    import distributed

    local = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", silence_logs=40)
    with local, distributed.Client(local) as client:
        client.gather(client.map(sleep_task, [0.0] * WORKERS * 4, pure=False))  # warm: imports, connections
        nbtimeout.map(sleep_task, [0.0] * WORKERS * 4, timeout=LIMIT, executor=client)
        yield client


def cases(client: Any) -> dict[str, tuple[str | None, Callable[[], float]]]:
    """name -> (name of its baseline or None, one measurement in seconds)."""
    items = [TASK_SECONDS] * TASKS

    def timed(run: Callable[[], Any]) -> Callable[[], float]:
        def measure() -> float:
            started = time.perf_counter()
            run()
            return time.perf_counter() - started
        return measure

    sweep = f"{TASKS} × {TASK_SECONDS * 1000:.0f} ms"
    plain = f"client.map + gather, {sweep}, no limit"
    stop_plain = f"client.submit of a {STOP_LIMIT * 1000:.0f} ms sleep, no limit"
    return {
        plain: (None, timed(lambda: client.gather(client.map(sleep_task, items, pure=False)))),
        f"nbtimeout.map(executor=client), {sweep}, {LIMIT:g} s limit each": (
            plain, timed(lambda: nbtimeout.map(sleep_task, items, timeout=LIMIT, executor=client))),
        stop_plain: (None, timed(lambda: client.submit(sleep_task, STOP_LIMIT, pure=False).result())),
        f"one task stopped at a {STOP_LIMIT * 1000:.0f} ms limit (C loop)": (
            stop_plain, timed(lambda: nbtimeout.map(_c_loop, [0], timeout=STOP_LIMIT, executor=client))),
    }


def _c_loop(_: Any) -> None:
    sum(range(10**10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with cluster() as client:
        measured = {name: [] for name in cases(client)}
        for _ in range(args.rounds):
            for name, (_base, measure) in cases(client).items():
                measured[name].append(measure())
        for name, (base, _measure) in cases(client).items():
            median = statistics.median(measured[name])
            ratio = f"{median / statistics.median(measured[base]):.2f}×" if base else "baseline"
            print(f"{name:70} {median:.3f} s  {ratio}")


if __name__ == "__main__":
    main()
