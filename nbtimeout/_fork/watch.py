"""Did the cell write into this memory? Asked of large buffers without hashing them.

After ``fork()`` every page the child has is shared with the kernel; the first write copies it and
the child's copy becomes *exclusively mapped*, which ``/proc/self/pagemap`` reports (bit 56, Linux
4.2+, readable without privileges). So the question costs 8 bytes of pagemap per 4 KiB page, not a
pass over the data: about 2 ms for 400 MB. A page the kernel wrote meanwhile also reads exclusive;
that only makes the buffer look changed, never the other way round. Where pagemap cannot be read
(macOS, ``NBTIMEOUT_PORTABLE=1``), or some page was exclusive already, a CRC-32 of the buffer
taken before the body decides.
"""

from __future__ import annotations

import ctypes
import os
import sys
import zlib
from array import array

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PAGEMAP = "/proc/self/pagemap"
# Below this a CRC is as cheap as reading pagemap, and the buffer may share pages with other objects.
PAGEMAP_MIN = 1 << 18
_EXCLUSIVE = 1 << 56


def _pagemap_usable() -> bool:
    return os.environ.get("NBTIMEOUT_PORTABLE") != "1" and os.access(PAGEMAP, os.R_OK)


def _exclusive_pages(addr: int, nbytes: int) -> int:
    """How many pages of [addr, addr + nbytes) the child has written (or that are its own)."""
    first, last = addr // PAGE, (addr + nbytes - 1) // PAGE
    with open(PAGEMAP, "rb", buffering=0) as pagemap:
        pagemap.seek(first * 8)
        data = pagemap.read((last - first + 1) * 8)
    np = sys.modules.get("numpy")
    if np is not None:
        entries = np.frombuffer(data, dtype=np.uint64)
        return int(np.count_nonzero(entries & np.uint64(_EXCLUSIVE)))
    return sum(1 for entry in array("Q", data) if entry & _EXCLUSIVE)


def _crc(addr: int, nbytes: int) -> int:
    return zlib.crc32((ctypes.c_char * nbytes).from_address(addr))


class Watch:
    """A region of memory noted before the body; equal to a later Watch of it if nobody wrote it."""

    __slots__ = ("addr", "crc", "nbytes")

    def __init__(self, addr: int, nbytes: int, before: bool = True) -> None:
        self.addr, self.nbytes, self.crc = addr, nbytes, None
        if not before or nbytes == 0:
            return
        if nbytes < PAGEMAP_MIN or not _PAGEMAP or _exclusive_pages(addr, nbytes):
            self.crc = _crc(addr, nbytes)

    def written(self) -> bool:
        if self.nbytes == 0:
            return False
        if self.crc is not None:
            return _crc(self.addr, self.nbytes) != self.crc
        return _exclusive_pages(self.addr, self.nbytes) > 0

    def __eq__(self, other: object) -> bool:
        """``before == after``: same region, not written in between."""
        if not isinstance(other, Watch):
            return NotImplemented
        return (self.addr, self.nbytes) == (other.addr, other.nbytes) and not self.written()

    __hash__ = None  # type: ignore[assignment]


_PAGEMAP = _pagemap_usable()


def array_region(arr: object) -> tuple[int, int]:
    """The bytes a numpy array spans (a view: only its own extent of the base)."""
    import numpy as np

    try:
        low, high = np.lib.array_utils.byte_bounds(arr)
    except AttributeError:  # numpy < 2
        low, high = np.byte_bounds(arr)
    return low, high - low

