"""The PAGEMAP_SCAN ioctl (Linux 6.7+, man 2const PAGEMAP_SCAN): populated regions, no holes.

The kernel walks page tables and merges adjacent pages of equal categories into one region,
so unpopulated space (a 64 TiB PROT_NONE reservation) costs nothing.
"""
from __future__ import annotations

import array
import errno
import fcntl
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from ..errors import Unsupported
from . import procfs

PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg) on x86-64/arm64
ARG = struct.Struct("<12Q")  # struct pm_scan_arg: 12 u64, 96 bytes
TASK_SIZE_MAX = 0x7FFFFFFFF000  # x86-64 user space top; EFAULT above it

CAT_WPALLOWED = 1 << 0
CAT_WRITTEN = 1 << 1
CAT_FILE = 1 << 2
CAT_PRESENT = 1 << 3
CAT_SWAPPED = 1 << 4
CAT_PFNZERO = 1 << 5
CAT_HUGE = 1 << 6  # PMD-mapped THP or hugetlb
CAT_SOFT_DIRTY = 1 << 7
CAT_GUARD = 1 << 8  # Linux 6.15+
# Not a kernel category: marks pages read by the plain pagemap fallback (no categories known).
CAT_UNKNOWN = 1 << 15

RETURN_MASK = CAT_FILE | CAT_PRESENT | CAT_SWAPPED | CAT_PFNZERO | CAT_HUGE | CAT_SOFT_DIRTY
VEC_LEN = 16384  # regions per ioctl (384 KiB)


def decode_regions(buf: bytes | bytearray | memoryview, n: int | None = None) -> np.ndarray:
    """struct page_region {u64 start, end, categories} entries (the first n, or all) as (k, 3).

    A resumed walk may repeat a region already returned: regions that start before the end
    of an earlier one are dropped.
    """
    import numpy as np

    k = len(buf) // 24 if n is None else n
    regs = np.frombuffer(buf, dtype="<u8", count=3 * k).reshape(k, 3)
    if k > 1:
        reach = np.maximum.accumulate(regs[:, 1])
        keep = np.ones(k, dtype=bool)
        keep[1:] = regs[1:, 0] >= reach[:-1]
        if not keep.all():
            regs = regs[keep]
    return regs


class Scanner:
    """Populated (present or swapped) regions of a process via PAGEMAP_SCAN."""

    def __init__(self, fd: int, pid: int, vec_len: int = VEC_LEN) -> None:
        self.fd = fd
        self.pid = pid
        self.vec_len = vec_len
        self.vec = array.array("Q", [0]) * (3 * vec_len)
        self.return_mask = RETURN_MASK | CAT_GUARD

    def _ioctl(self, start: int, end: int) -> tuple[int, int]:
        arg = bytearray(
            ARG.pack(ARG.size, 0, start, end, 0, self.vec.buffer_info()[0], self.vec_len, 0, 0, 0,
                     CAT_PRESENT | CAT_SWAPPED, self.return_mask)
        )
        try:
            n = fcntl.ioctl(self.fd, PAGEMAP_SCAN, arg, True)
        except OSError as err:
            if err.errno == errno.EINVAL and self.return_mask & CAT_GUARD:
                # Kernels before 6.15 reject the GUARD category bit.
                self.return_mask &= ~CAT_GUARD
                return self._ioctl(start, end)
            if err.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise Unsupported("this kernel has no PAGEMAP_SCAN (Linux 6.7+)", self.pid) from err
            with procfs.translate(self.pid, procfs.proc_path(self.pid, "pagemap"), started=True):
                raise
        return n, ARG.unpack(arg)[4]

    def regions_raw(self, start: int, end: int) -> bytes:
        """struct page_region array (u64 start, end, categories) covering [start, end), sorted."""
        end = min(end, TASK_SIZE_MAX)
        out: list[bytes] = []
        cur = start
        while cur < end:
            n, walk_end = self._ioctl(cur, end)
            if n:
                out.append(self.vec[: 3 * n].tobytes())
            if n < self.vec_len:
                break
            # Seen on 6.18: once the kernel's 512-region buffer has flushed, walk_end stays at
            # that flush point even when the walk went further; trust the last region too.
            cur = max(walk_end, self.vec[3 * n - 2])
        return b"".join(out)

    def regions(self, start: int, end: int) -> np.ndarray:
        """(k, 3) array of [start, end, categories] byte addresses, sorted, for [start, end)."""
        return decode_regions(self.regions_raw(start, end))


def probe(fd: int, pid: int) -> bool:
    """Whether PAGEMAP_SCAN works on this kernel (an empty scan of page 0)."""
    try:
        Scanner(fd, pid, vec_len=1)._ioctl(0, 4096)
    except Unsupported:
        return False
    return True
