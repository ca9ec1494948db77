"""Did the cell write into this memory? Asked of large buffers without hashing them.

After ``fork()`` every page the child has is shared with the kernel; the first write copies it and
the child's copy becomes *exclusively mapped*, which ``/proc/self/pagemap`` reports (bit 56, Linux
4.2+, readable without privileges). So the question costs 8 bytes of pagemap per 4 KiB page, not a
pass over the data: about 2 ms for 400 MB. A page the kernel wrote meanwhile also reads exclusive;
that only makes the buffer look changed, never the other way round (so can a read of memory the
kernel never touched, which may fault in a page of its own). Where pagemap cannot be read
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


def _pagemap(first: int, count: int) -> bytes:
    with open(PAGEMAP, "rb", buffering=0) as pagemap:
        pagemap.seek(first * 8)
        return pagemap.read(count * 8)


def _exclusive_pages(first: int, count: int) -> int:
    """How many of ``count`` pages from page number ``first`` are this process's own."""
    if count <= 0:
        return 0
    data = _pagemap(first, count)
    np = sys.modules.get("numpy")
    if np is not None:
        entries = np.frombuffer(data, dtype=np.uint64)
        return int(np.count_nonzero(entries & np.uint64(_EXCLUSIVE)))
    return sum(1 for entry in array("Q", data) if entry & _EXCLUSIVE)


_usable: bool | None = None


def pagemap_usable() -> bool:
    """Whether pagemap reports a page this process just wrote as its own (checked once per process)."""
    global _usable
    if _usable is None:
        _usable = False
        if os.environ.get("NBTIMEOUT_PORTABLE") != "1" and os.access(PAGEMAP, os.R_OK):
            probe = ctypes.create_string_buffer(3 * PAGE)
            probe[PAGE] = b"x"  # touched now, in this process: exclusive if pagemap tells the truth
            try:
                _usable = _exclusive_pages(ctypes.addressof(probe) // PAGE + 1, 1) == 1
            except OSError:
                pass
    return _usable


def _crc(addr: int, nbytes: int) -> int:
    return zlib.crc32((ctypes.c_char * nbytes).from_address(addr)) if nbytes > 0 else 0


class Watch:
    """A region of memory noted before the body; equal to a later Watch of it if nobody wrote it.

    With pagemap, the whole pages inside the region are asked about; the partial pages at its ends
    may hold other objects (whose reference counts change all the time), so those bytes get a CRC.
    """

    __slots__ = ("addr", "crc", "edges", "nbytes", "pages")

    def __init__(self, addr: int, nbytes: int, before: bool = True) -> None:
        self.addr, self.nbytes, self.crc, self.edges, self.pages = addr, nbytes, None, None, (0, 0)
        if not before or nbytes == 0:
            return
        if nbytes >= PAGEMAP_MIN and pagemap_usable():
            first = -(-addr // PAGE)  # the first page that starts inside the region
            end = (addr + nbytes) // PAGE
            self.pages = (first, end - first)
            if _exclusive_pages(*self.pages) == 0:
                self.edges = self._edges()
                return
        self.crc = _crc(addr, nbytes)

    def _edges(self) -> tuple[int, int]:
        first, count = self.pages
        head = first * PAGE - self.addr
        tail_start = (first + count) * PAGE
        return _crc(self.addr, head), _crc(tail_start, self.addr + self.nbytes - tail_start)

    def written(self) -> bool:
        if self.nbytes == 0:
            return False
        if self.crc is not None:
            return _crc(self.addr, self.nbytes) != self.crc
        return self._edges() != self.edges or _exclusive_pages(*self.pages) > 0

    def written_spans(self) -> list[tuple[int, int]] | None:
        """The byte ranges (from ``addr``) that may have been written, or None if not known here."""
        if self.crc is not None or self.edges is None:
            return None
        first, count = self.pages
        head, tail_start = first * PAGE - self.addr, (first + count) * PAGE - self.addr
        spans = []
        head_crc, tail_crc = self._edges()
        if head_crc != self.edges[0]:
            spans.append((0, head))
        data = array("Q", _pagemap(first, count)) if count > 0 else array("Q")
        spans += [(head + n * PAGE, head + (n + 1) * PAGE) for n, entry in enumerate(data) if entry & _EXCLUSIVE]
        if tail_crc != self.edges[1]:
            spans.append((tail_start, self.nbytes))
        return spans

    def __eq__(self, other: object) -> bool:
        """``before == after``: same region, not written in between."""
        if not isinstance(other, Watch):
            return NotImplemented
        return (self.addr, self.nbytes) == (other.addr, other.nbytes) and not self.written()

    __hash__ = None  # type: ignore[assignment]


def array_region(arr: object) -> tuple[int, int]:
    """The bytes a numpy array spans (a view: only its own extent of the base)."""
    import numpy as np

    try:
        low, high = np.lib.array_utils.byte_bounds(arr)
    except AttributeError:  # numpy < 2
        low, high = np.byte_bounds(arr)
    return low, high - low



# CPython's own records of a container's contents, read where the layout is the one checked here
# (a probe at first use proves it; anywhere else, or when it does not hold, the callers compare
# the parts themselves). A dict's version tag changes with every insert, delete or replacement
# (PEP 509); a list's items are one array of pointers, which watching for writes covers, identity
# of every item included, without copying it.
_WORD = ctypes.sizeof(ctypes.c_void_p)
_layout: dict[str, bool] = {}


def _word(addr: int) -> int:
    return ctypes.c_size_t.from_address(addr).value


def _dict_probe() -> bool:
    probe = {"a": 1}
    if os.environ.get("NBTIMEOUT_PORTABLE") == "1" or _word(id(probe) + 2 * _WORD) != 1:
        return False  # ma_used is not where it should be
    first = _word(id(probe) + 3 * _WORD)
    same = _word(id(probe) + 3 * _WORD)
    probe["a"] = 2
    replaced = _word(id(probe) + 3 * _WORD)
    del probe["a"]
    deleted = _word(id(probe) + 3 * _WORD)
    return first == same and len({first, replaced, deleted}) == 3 and first != 0


def _list_probe() -> bool:
    probe = [object(), object(), object()]
    if os.environ.get("NBTIMEOUT_PORTABLE") == "1" or _word(id(probe) + 2 * _WORD) != 3:
        return False
    items = _word(id(probe) + 3 * _WORD)
    return all(_word(items + n * _WORD) == id(item) for n, item in enumerate(probe))


def dict_version(obj: dict) -> int | None:
    """The version tag of a plain dict (changes whenever its contents do), or None if unknown here."""
    if type(obj) is not dict:
        return None
    if "dict" not in _layout:
        _layout["dict"] = _dict_probe()
    return _word(id(obj) + 3 * _WORD) if _layout["dict"] else None


def list_items(obj: list) -> tuple[int, int] | None:
    """(address, bytes) of a plain list's array of item pointers, or None if unknown here."""
    if type(obj) is not list:
        return None
    if "list" not in _layout:
        _layout["list"] = _list_probe()
    return (_word(id(obj) + 3 * _WORD), len(obj) * _WORD) if _layout["list"] else None
