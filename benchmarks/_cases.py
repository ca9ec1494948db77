"""One function per measured case; each returns one measurement (seconds, or bytes per second)."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import nbtimeout

from . import _raw

BATCH_SIGNAL = 200  # calls per measurement for the in-process engines
BATCH_FORK = 20     # calls per measurement for the process-based ones


def per_call(call, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


# --- overhead of a call that returns at once ----------------------------------------------------

def quick_calls() -> dict[str, tuple[str, callable, int]]:
    """name -> (baseline name, zero-argument call, batch)."""
    import func_timeout
    import pebble
    import stopit
    import timeout_decorator
    import wrapt_timeout_decorator

    def nbt_signal():
        with nbtimeout.timeout(5):
            pass

    def stopit_signal():
        with stopit.SignalTimeout(5):
            pass

    def nbt_thread():
        with nbtimeout.timeout(5, mode="thread"):
            pass

    def stopit_thread():
        with stopit.ThreadingTimeout(5):
            pass

    def answer():
        return 42

    return {
        "raw setitimer arm+cancel": ("", _raw.setitimer_arm_cancel, BATCH_SIGNAL),
        "nbtimeout signal, with timeout(5)": ("raw setitimer arm+cancel", nbt_signal, BATCH_SIGNAL),
        "nbtimeout signal, @timeout(5)": ("raw setitimer arm+cancel", nbtimeout.timeout(5)(answer), BATCH_SIGNAL),
        "nbtimeout thread, with timeout(5, mode='thread')": ("raw setitimer arm+cancel", nbt_thread, BATCH_SIGNAL),
        "timeout-decorator (signal)": ("raw setitimer arm+cancel", timeout_decorator.timeout(5)(answer),
                                       BATCH_SIGNAL),
        "wrapt-timeout-decorator (signal)": ("raw setitimer arm+cancel",
                                             wrapt_timeout_decorator.timeout(5)(answer), BATCH_SIGNAL),
        "stopit SignalTimeout": ("raw setitimer arm+cancel", stopit_signal, BATCH_SIGNAL),
        "stopit ThreadingTimeout": ("raw setitimer arm+cancel", stopit_thread, BATCH_SIGNAL),
        "func-timeout (thread)": ("raw setitimer arm+cancel",
                                  lambda: func_timeout.func_timeout(5, answer), BATCH_FORK),
        "raw fork + pipe round trip": ("", _raw.fork_round_trip, BATCH_FORK),
        "nbtimeout fork": ("raw fork + pipe round trip", nbtimeout.timeout(5, mode="fork")(answer), BATCH_FORK),
        "pebble concurrent.process": ("raw fork + pipe round trip",
                                      lambda: pebble.concurrent.process(timeout=5)(answer)().result(),
                                      BATCH_FORK),
        "timeout-decorator (process)": ("raw fork + pipe round trip",
                                        timeout_decorator.timeout(5, use_signals=False)(answer), BATCH_FORK),
    }


# --- abort latency past the deadline -------------------------------------------------------------

DEADLINE = 0.1


def _late(call) -> float:
    start = time.monotonic()
    try:
        call()
    except BaseException:
        pass
    return time.monotonic() - start - DEADLINE


class _StopError(Exception):
    pass


def _raise_stop(*_):
    raise _StopError


def _raw_sleep(body=lambda: time.sleep(10)):
    old = signal.signal(signal.SIGALRM, _raise_stop)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE)
    try:
        body()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _spin():
    end = time.monotonic() + 10
    while time.monotonic() < end:
        pass


def raw_sleep_abort() -> float:
    """A handler that raises and setitimer around time.sleep, the handler put back after: the floor."""
    return _late(_raw_sleep)


def abort_cases() -> dict[str, tuple[str, callable]]:
    """name -> (baseline, measurement returning seconds past the deadline)."""
    import pebble
    import timeout_decorator

    def sleeper():
        time.sleep(10)

    def c_loop():
        return sum(range(10**10))

    # Each library's limited callable is made once, outside the measurement, as a user would.
    nbt_sleep = nbtimeout.timeout(DEADLINE)(sleeper)
    nbt_spin = nbtimeout.timeout(DEADLINE)(_spin)
    nbt_thread_spin = nbtimeout.timeout(DEADLINE, mode="thread")(_spin)
    td_sleep = timeout_decorator.timeout(DEADLINE)(sleeper)
    nbt_fork_loop = nbtimeout.timeout(DEADLINE, mode="fork", grace=0.5)(c_loop)
    nbt_fork_sleep = nbtimeout.timeout(DEADLINE, mode="fork")(sleeper)
    pebble_process = pebble.concurrent.process(timeout=DEADLINE)(c_loop)
    return {
        "raw setitimer, sleep": ("", raw_sleep_abort),
        "nbtimeout signal, sleep": ("raw setitimer, sleep", lambda: _late(nbt_sleep)),
        "timeout-decorator (signal), sleep": ("raw setitimer, sleep", lambda: _late(td_sleep)),
        "raw setitimer, Python loop": ("", lambda: _late(lambda: _raw_sleep(_spin))),
        "nbtimeout signal, Python loop": ("raw setitimer, Python loop", lambda: _late(nbt_spin)),
        "nbtimeout thread, Python loop": ("raw setitimer, Python loop", lambda: _late(nbt_thread_spin)),
        "raw fork + SIGKILL, C loop": ("", lambda: _raw.fork_kill_c_loop(DEADLINE)),
        "nbtimeout fork, C loop": ("raw fork + SIGKILL, C loop", lambda: _late(nbt_fork_loop)),
        "nbtimeout fork, sleep": ("raw fork + SIGKILL, C loop", lambda: _late(nbt_fork_sleep)),
        "pebble process, C loop": ("raw fork + SIGKILL, C loop", lambda: _late(lambda: pebble_process().result())),
    }


# --- large results and output latency ------------------------------------------------------------

ARRAY_BYTES = 256 << 20


def raw_throughput() -> float:
    return _raw.pipe_throughput(ARRAY_BYTES)


def nbtimeout_throughput() -> float:
    make = nbtimeout.timeout(30, mode="fork")(lambda: np.ones(ARRAY_BYTES, dtype=np.uint8))
    start = time.perf_counter()
    array = make()
    elapsed = time.perf_counter() - start
    assert array.nbytes == ARRAY_BYTES
    return ARRAY_BYTES / elapsed


def pebble_throughput() -> float:
    import pebble

    make = pebble.concurrent.process(timeout=30)(lambda: np.ones(ARRAY_BYTES, dtype=np.uint8))
    start = time.perf_counter()
    array = make().result()
    elapsed = time.perf_counter() - start
    assert array.nbytes == ARRAY_BYTES
    return ARRAY_BYTES / elapsed


class _Arrivals:
    """A stdout stand-in that notes when the marker arrives."""

    def __init__(self):
        self.at = None

    def write(self, text):
        if self.at is None and "MARK" in text:
            self.at = time.monotonic()
        return len(text)

    def flush(self):
        pass


def nbtimeout_print_latency() -> float:
    """From a print in the child to its arrival in the parent's sys.stdout."""
    sink, real = _Arrivals(), sys.stdout
    shared = {}

    def child():
        shared["sent"] = time.monotonic()
        print("MARK", repr(shared["sent"]), flush=True)
        time.sleep(0.05)
        return shared["sent"]

    sys.stdout = sink
    try:
        sent = nbtimeout.timeout(5, mode="fork")(child)()
    finally:
        sys.stdout = real
    return sink.at - sent


def raw_print_latency() -> float:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, repr(time.monotonic()).encode())
        time.sleep(0.05)
        os._exit(0)
    os.close(w)
    data = os.read(r, 64)
    arrived = time.monotonic()
    os.close(r)
    os.waitpid(pid, 0)
    return arrived - float(data)


def ballast(nbytes: int) -> list[bytes]:
    """Resident memory of ``nbytes`` as a kernel holds it: many small heap objects.

    One big numpy array would sit on transparent huge pages, whose few page-table entries make
    fork look far cheaper than it is for a real notebook's heap.
    """
    return [bytes(4096) for _ in range(nbytes // 4096)]



# --- a fork cell in a kernel holding large data it only reads (issue 11) -------------------------

LARGE_NAMESPACE = """
import numpy as np, pandas as pd
rows = 5_000_000
bigdf = pd.DataFrame({"i": np.arange(rows), "f": np.random.rand(rows),
                      "s": np.random.choice(["a", "bb", "ccc"], rows).astype(object)})
arr = np.random.rand(25_000_000)  # 200 MB
"""
READS_LARGE = "%%timeout 60 -q -m fork\nz = len(bigdf) + arr.size"


# --- fork cells that touch one item of big containers (issue 22) --------------------------------

def touch_namespace(scale: int) -> str:
    """A dict of 2M ints, 1M small lists, 2M short strings, a 400 MB list of 4 KiB bytes and 250k
    records with an alias, each ``scale`` times smaller."""
    return (f"d = {{i: i for i in range({2_000_000 // scale})}}\n"
            f"lists = [[i] for i in range({1_000_000 // scale})]\n"
            f"strings = [str(i) for i in range({2_000_000 // scale})]\n"
            f"big = [bytes(4096) for _ in range({100_000 // scale})]\n"
            f"records = [{{'id': i}} for i in range({250_000 // scale})]\nfirst = records[0]\n")


def touch_cells(scale: int) -> dict[str, str]:
    return {"dict of 2M ints: read one key": "z = d[5]", "dict of 2M ints: write one key": "d[5] = -5",
            "1M small lists: read one": "z = lists[5][0]", "1M small lists: append to one": "lists[5].append(1)",
            "2M short strings: read one": "z = strings[5]", "2M short strings: set one": "strings[5] = 'x'",
            "400 MB list of bytes: read one item": "z = len(big[5])",
            "flag every record (alias first = records[0])": "for r in records: r['f'] = 1"}
