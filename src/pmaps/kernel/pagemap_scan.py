"""The PAGEMAP_SCAN ioctl (Linux 6.7+, man 2const PAGEMAP_SCAN), which finds the populated regions of
an address space without reading its holes, and the pacing of every read that takes a target's
mmap_lock. No numpy: a command starts its first scan on a thread while numpy is imported
(`regions_raw`; pagemap.py decodes). pagemap.py imports every name here under the same name, but
PACER (one pacing state per thread for reads and scans: this module's).
"""
from __future__ import annotations

import array
import errno
import fcntl
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Unsupported
from . import procfs

if TYPE_CHECKING:
    import numpy as np


# -- pacing: let the target's writers in -----------------------------------------------------------
# Every pagemap read and PAGEMAP_SCAN call holds the target's mmap_lock for reading. A writer of the
# target (mmap, munmap, mprotect, brk) that finds it held sleeps, and our release wakes it; but a reader
# that comes back before the writer has woken up (15-20 us here) takes the lock again ("reader
# optimistic lock stealing", kernel/locking/rwsem.c rwsem_down_read_slowpath), as do the 2 MiB windows
# inside one pagemap read (fs/proc/task_mmu.c pagemap_read). The writer then gets its turn only when
# the reads stop, or when the rwsem's handoff forces it, after RWSEM_WAIT_TIMEOUT (4 ms counted in
# jiffies: 4-8 ms at HZ=250, twice for an mmap and its munmap). Traced on 6.18 (bench_impact.py
# --trace): the target's writer woken at every one of our releases and asleep again, 4-16 ms, until a
# READ waiter of ours queues behind it (the handoff). So reads come in bursts of at most PACE_HOLD
# seconds with a pause of PACE_GAP between them: a waiting writer waits one burst. Not helped here: a
# reader preempted while it holds the lock (its CPU busy with others) keeps the writer out for the
# other task's timeslice, and a writer whose own CPU is busy may not run during any pause.
PACE_HOLD = 0.25e-3
# The writer's wake-up from an idle CPU (sched_waking to sched_switch, traced): p50 14-18 us, p90 18-26 us;
# when a pause is missed, the writer waits one more burst.
PACE_GAP = 30e-6


class Pacer(threading.local):
    """The pacing of one thread's reads (see PACE_HOLD): `before` each read that takes a target's
    mmap_lock, `after` it. `clock` and `nap` are seams for tests."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, nap: Callable[[float], None] | None = None,
                 hold: float = PACE_HOLD, gap: float = PACE_GAP) -> None:
        self.clock = clock
        self.nap = nap if nap is not None else self._spin
        self.hold, self.gap = hold, gap
        self.burst = 0.0  # when the current burst of back-to-back reads began
        self.end = -gap  # when the last read returned
        self.naps = 0
        self.target = 0  # whose mmap_lock the burst holds: reads of another process start a new one

    def _spin(self, s: float) -> None:
        # Not a sleep: a timer wakes a sleeper 60-80 us late here whatever the interval (VM timer, 50 us
        # default slack), more than twice the pause needed. Nor sched_yield: on a busy CPU it hands the
        # rest of a timeslice (ms) to another task. A writer on our own CPU, woken by our release,
        # preempts us on its own when the scheduler lets it.
        end = self.clock() + s
        while self.clock() < end:
            pass

    def before(self, target: int = 0) -> None:
        now = self.clock()
        if now - self.end >= self.gap or target != self.target:
            # Away long enough since the last read (a waiting writer had its turn), or a read of
            # another process, under another mmap_lock (top and the exporter read many in a row).
            self.burst = now
            self.target = target
        elif now - self.burst >= self.hold:
            self.nap(self.gap)
            self.naps += 1
            self.burst = self.clock()

    def after(self) -> None:
        self.end = self.clock()


PACER = Pacer()  # one state per thread (threading.local): each reader thread paces its own reads


# -- PAGEMAP_SCAN ----------------------------------------------------------------------

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
# Not a kernel category either: a shmem page in swap, found through its file (kernel/shmem.py); it
# has no pte, and pmaps gives it the pagemap entry below (swapped, file, no swap entry).
CAT_SHMEM_SWAP = 1 << 14

RETURN_MASK = CAT_FILE | CAT_PRESENT | CAT_SWAPPED | CAT_PFNZERO | CAT_HUGE | CAT_SOFT_DIRTY
# What the page reads need from the scan: pagemap entries say present, swapped, file and soft-dirty
# themselves; only the zero page and PMD mappings come from the categories. Asking for PAGE_IS_FILE
# alone cost 60-70 ms of an 8 GiB scan (the kernel looks up every page's folio mapping).
PAGES_RETURN_MASK = CAT_PFNZERO | CAT_HUGE
VEC_LEN = 16384  # regions per ioctl (384 KiB)
SCAN_MAX_PAGES = 1 << 15  # pages one PAGEMAP_SCAN call may walk past: each mmap_lock hold stays well under 1 ms


class Scanner:
    """Populated (present or swapped) regions of a process via PAGEMAP_SCAN."""

    def __init__(self, fd: int, pid: int, vec_len: int = VEC_LEN, anyof: int = CAT_PRESENT | CAT_SWAPPED,
                 returns: int = RETURN_MASK | CAT_GUARD, max_pages: int = 0) -> None:
        self.fd = fd
        self.pid = pid
        self.vec_len = vec_len
        self.vec = array.array("Q", [0]) * (3 * vec_len)
        # Fewer categories returned, fewer and longer regions: the kernel merges adjacent pages whose
        # returned categories are equal (fs/proc/task_mmu.c pagemap_scan_push_range).
        self.return_mask = returns
        self.anyof = anyof  # category_anyof_mask: regions with any of these categories
        # max_pages: the ioctl stops after this many matching pages and says where (walk_end). It
        # holds the target's mmap_lock for one call's walk (fs/proc/task_mmu.c do_pagemap_scan), so
        # a bound keeps each hold short for the process being read; 0: no bound.
        self.max_pages = max_pages

    def _ioctl(self, start: int, end: int) -> tuple[int, int]:
        arg = bytearray(
            ARG.pack(ARG.size, 0, start, end, 0, self.vec.buffer_info()[0], self.vec_len, self.max_pages, 0, 0,
                     self.anyof, self.return_mask)
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
            PACER.before(self.pid)
            n, walk_end = self._ioctl(cur, end)
            PACER.after()
            if n:
                out.append(self.vec[: 3 * n].tobytes())
            if n < self.vec_len and (not self.max_pages or walk_end >= end):
                break
            # Seen on 6.18: once the kernel's 512-region buffer has flushed, walk_end stays at
            # that flush point even when the walk went further; trust the last region too.
            nxt = max(walk_end, self.vec[3 * n - 2] if n else 0)
            if nxt <= cur:
                break  # no progress: nothing more to find (never loop)
            cur = nxt
        return b"".join(out)

    def regions(self, start: int, end: int) -> np.ndarray:
        """(k, 3) array of [start, end, categories] byte addresses, sorted, for [start, end)."""
        from .pagemap import decode_regions  # numpy's, imported by then

        return decode_regions(self.regions_raw(start, end))


def probe(fd: int, pid: int) -> bool:
    """Whether PAGEMAP_SCAN works on this kernel (an empty scan of page 0)."""
    try:
        Scanner(fd, pid, vec_len=1)._ioctl(0, 4096)
    except Unsupported:
        return False
    return True
