"""Change detection for large buffers in a fork child (``_fork/watch.py``), pagemap and CRC ways."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nbtimeout._fork import watch
from nbtimeout._fork.watch import Watch, array_region


def in_child(check) -> int:
    """Run ``check()`` in a forked child; its return value (a small int) as the exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            code = check()
        except BaseException:
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("pagemap", [True, False], ids=["pagemap", "crc"])
def test_a_write_is_seen_a_read_or_a_neighbours_write_is_not(pagemap):
    if pagemap and not watch.pagemap_usable():
        pytest.skip("/proc/self/pagemap cannot tell this process's own pages here")
    backing = np.zeros(3_000_000)  # 24 MB; the watched view leaves unaligned edges on both sides
    backing.fill(0.0)  # memory a kernel holds has been written (a read of never-touched memory may fault
    view = backing[1001:2_000_001]  # a page in, which only makes it look written: a copy, never wrong)

    def check() -> int:
        watch._usable = pagemap
        results = []
        before = Watch(*array_region(view))
        results.append(before.crc is None)  # pagemap was used when asked for
        float(view.sum())  # a read
        backing[1000] = 1.0  # a neighbour on the same page as the view's first byte
        backing[2_000_001] = 1.0
        results.append(not before.written())
        view[12345] = 2.0
        results.append(before.written())
        return sum(bit << i for i, bit in enumerate(results))

    expected = (int(pagemap) << 0) | (1 << 1) | (1 << 2)
    assert in_child(check) == expected


def test_a_write_at_the_unaligned_edge_is_seen():
    backing = np.zeros(3_000_000)
    view = backing[1001:2_000_001]

    def check() -> int:
        before = Watch(*array_region(view))
        view[0] = 5.0  # in the partial first page
        first = before.written()
        after = Watch(*array_region(view))
        view[-1] = 5.0  # in the partial last page
        return int(first) + 2 * int(after.written())

    assert in_child(check) == 3
