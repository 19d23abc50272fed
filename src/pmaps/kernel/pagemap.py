"""/proc/PID/pagemap: the entry layout (Documentation/admin-guide/mm/pagemap.rst) and the
PAGEMAP_SCAN ioctl (Linux 6.7+, man 2const PAGEMAP_SCAN) that finds populated regions without
reading holes. Decoders are pure (numpy); `Scanner` and `read_entries` are the thin readers.

PAGEMAP_SCAN: the kernel walks page tables and merges adjacent pages of equal categories into
one region, so unpopulated space (a 64 TiB PROT_NONE reservation) costs nothing.
"""
from __future__ import annotations

import array
import errno
import fcntl
import struct
import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import Unsupported
from ..numeric import arange_runs, merge_intervals, seg_offsets
from . import procfs
from .native import Core

PM_PFN_MASK = np.uint64((1 << 55) - 1)  # bits 0-54; zeroed without CAP_SYS_ADMIN since 4.2
PM_SWAP_TYPE_MASK = np.uint64(0x1F)  # bits 0-4 when swapped
PM_SOFT_DIRTY = 55
PM_EXCLUSIVE = 56  # "page exclusively mapped", since 4.2
PM_UFFD_WP = 57  # since 5.13
PM_GUARD = 58  # guard region, since 6.15
PM_FILE = 61  # file page or shared anon, since 3.5
PM_SWAPPED = 62
PM_PRESENT = 63

# The pagemap bits pmaps reports, in the order of the --flags=all letters and JSON names.
PM_BITS: tuple[tuple[int, str, str], ...] = (
    (PM_PRESENT, "present", "p"),
    (PM_SWAPPED, "swapped", "w"),
    (PM_FILE, "file", "F"),
    (PM_EXCLUSIVE, "exclusive", "1"),
    (PM_SOFT_DIRTY, "soft_dirty", "f"),
    (PM_UFFD_WP, "uffd_wp", "k"),
    (PM_GUARD, "guard", "j"),
)
ENTRY = np.dtype("<u8")


def decode_pagemap(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Entries of a pagemap read: one little-endian u64 per virtual page."""
    if len(data) % 8:
        raise ValueError(f"pagemap data of {len(data)} bytes is not a multiple of 8")
    return np.frombuffer(data, dtype=ENTRY)


def top_byte(entries: np.ndarray) -> np.ndarray:
    """Bits 56-63 of each entry (exclusive, uffd-wp, guard, file, swapped, present) as a
    strided uint8 view: no copy, and 8x less memory traffic for the tests on them."""
    return np.ascontiguousarray(entries).view(np.uint8)[7::8]


TOP_EXCLUSIVE = 0x01  # bit 56
TOP_FILE = 1 << (PM_FILE - 56)  # bit 61


READ_GAP = 512  # read through holes up to this many pages (4 KiB of entries) rather than split a read

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
# Pages one pagemap read covers (16 MiB of address space): its walk, 10-20 us per 2 MiB window of 4 KiB
# pages, stays a fraction of a burst.
READ_MAX_PAGES = 4096


# A category scan (anyof: swapped, huge) matches few pages, so its max_pages does not bound its walk:
# scan_windows bounds it by address instead.
SCAN_WINDOW_PAGES = 1 << 15  # 128 MiB of VMA: one PAGEMAP_SCAN walk of it holds the mmap_lock ~0.4 ms
HUGE_VMA_PAGES = 1 << 24  # 64 GiB: a VMA above this (a reservation: sparse) is one window, not 512 per TiB


def scan_windows(starts: np.ndarray, ends: np.ndarray, window: int = SCAN_WINDOW_PAGES,
                 huge: int = HUGE_VMA_PAGES) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) page windows covering the sorted, disjoint VMA page ranges, each holding at most
    `window` pages of VMA (the gaps between VMAs cost a walk nothing), small VMAs together, big ones
    cut; a VMA of more than `huge` pages is a window of its own. int64 page numbers."""
    s, e = starts.astype(np.int64), ends.astype(np.int64)
    size = e - s
    if not len(s):
        return s, e
    # Pieces of at most half a window, grouped by the half window their first page falls in: a
    # group is at most one half plus its last piece.
    half = max(window // 2, 1)
    big = size > huge
    k = np.where(big, 1, np.maximum(-(-size // half), 1))
    vma = np.repeat(np.arange(len(s)), k)
    piece = arange_runs(np.zeros(len(s), dtype=np.int64), k)  # 0..k-1 within each VMA
    ps = s[vma] + piece * half
    pe = np.where(big[vma], e[vma], np.minimum(ps + half, e[vma]))
    before = np.cumsum(pe - ps) - (pe - ps)  # VMA pages before each piece
    group = before // half
    first = np.flatnonzero(np.diff(group, prepend=-1))
    last = np.append(first[1:], len(ps)) - 1
    return ps[first], pe[last]


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


def open_pagemap(pid: int) -> int:
    """An fd on /proc/PID/pagemap (closed with procfs.close)."""
    return procfs.open_pagemap(pid)


def read_runs(fd: int, pid: int, starts: np.ndarray, ends: np.ndarray, gap: int = READ_GAP) -> np.ndarray:
    """Entries for the pages of the given sorted, disjoint [start, end) page runs, in order.

    Runs separated by small holes are read in one pread each (the hole's entries are dropped)."""
    lens = (ends - starts).astype(np.int64)
    seg_s, seg_e, seg_id = merge_intervals(starts, ends, gap)
    seg_len = seg_e - seg_s
    buf = np.empty(int(seg_len.sum()), dtype="<u8")  # filled whole, or gone_error below
    mv = buf.data.cast("B")
    path = procfs.proc_path(pid, "pagemap")
    pos = 0
    for s, ln in zip(seg_s.tolist(), seg_len.tolist()):
        for a in range(s, s + ln, READ_MAX_PAGES):
            k = min(READ_MAX_PAGES, s + ln - a)
            PACER.before(pid)
            got = procfs.pread_into(fd, mv[pos * 8 : (pos + k) * 8], a * 8, pid, path)
            PACER.after()
            if got < k * 8:
                # pagemap reads 0 bytes once the mm is gone (fs/proc/task_mmu.c pagemap_read).
                raise procfs.gone_error(pid, path, started=True)
            pos += k
    if len(seg_s) == len(starts):
        return buf  # no holes were read through: the buffer is the runs, in order
    run_buf = seg_offsets(seg_len)[seg_id] + (starts.astype(np.int64) - seg_s[seg_id])
    return buf[arange_runs(run_buf, lens)]


def read_matching(fd: int, pid: int, starts: np.ndarray, ends: np.ndarray, pfns: np.ndarray,
                  gap: int = READ_GAP) -> tuple[np.ndarray, np.ndarray]:
    """The present entries of the given sorted, disjoint [start, end) page runs whose PFN is in the
    sorted array `pfns`, in order, and the index of each one's PFN in `pfns` (top's observer
    correction: the few thousand pages per process it shares with pmaps). The compiled core does
    it in one call without the GIL (one paced read: up to READ_MAX_PAGES pages); bigger reads, and
    the pure path, read with read_runs."""
    pfns = np.ascontiguousarray(pfns, dtype=np.uint64)
    s = np.ascontiguousarray(starts, dtype=np.uint64)
    e = np.ascontiguousarray(ends, dtype=np.uint64)
    core = _core()
    if core is not None and int((e - s).sum()) <= READ_MAX_PAGES:
        path = procfs.proc_path(pid, "pagemap")
        PACER.before(pid)
        try:
            with procfs.translate(pid, path, started=True):
                got = core.read_matching(fd, s, e, gap, pfns)
        finally:
            PACER.after()
        if got is None:  # pagemap reads 0 bytes once the mm is gone (fs/proc/task_mmu.c pagemap_read)
            raise procfs.gone_error(pid, path, started=True)
        return np.frombuffer(got[0], dtype=ENTRY), np.frombuffer(got[1], dtype=np.int64)
    pm = read_runs(fd, pid, s, e, gap)
    pm = pm[present(pm)]
    if not len(pfns):
        return pm[:0], np.zeros(0, dtype=np.int64)
    pfn = pm & PM_PFN_MASK
    at = np.minimum(np.searchsorted(pfns, pfn), len(pfns) - 1)
    hit = pfns[at] == pfn
    return pm[hit], at[hit].astype(np.int64)


def _core() -> Core | None:
    from .native import load

    return load()


def bit(entries: np.ndarray, n: int) -> np.ndarray:
    """Boolean column of bit n."""
    return ((entries >> np.uint64(n)) & np.uint64(1)).astype(bool)


def present(entries: np.ndarray) -> np.ndarray:
    # Bit 63 is the top bit: one unsigned compare.
    return entries >= np.uint64(1 << PM_PRESENT)


def swapped(entries: np.ndarray) -> np.ndarray:
    return bit(entries, PM_SWAPPED)


def populated(entries: np.ndarray) -> np.ndarray:
    """Present or swapped (bit 63 or 62: the value is at least 2**62)."""
    return entries >= np.uint64(1 << PM_SWAPPED)


def pfn(entries: np.ndarray) -> np.ndarray:
    """PFN of present entries, 0 elsewhere (and 0 everywhere without CAP_SYS_ADMIN)."""
    return np.where(present(entries), entries & PM_PFN_MASK, np.uint64(0))


def swap_type(entries: np.ndarray) -> np.ndarray:
    return np.where(swapped(entries), entries & PM_SWAP_TYPE_MASK, np.uint64(0))


def swap_offset(entries: np.ndarray) -> np.ndarray:
    return np.where(swapped(entries), (entries & PM_PFN_MASK) >> np.uint64(5), np.uint64(0))


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
SHMEM_SWAP_ENTRY = (1 << PM_SWAPPED) | (1 << PM_FILE)

RETURN_MASK = CAT_FILE | CAT_PRESENT | CAT_SWAPPED | CAT_PFNZERO | CAT_HUGE | CAT_SOFT_DIRTY
# What the page reads need from the scan: pagemap entries say present, swapped, file and soft-dirty
# themselves; only the zero page and PMD mappings come from the categories. Asking for PAGE_IS_FILE
# alone cost 60-70 ms of an 8 GiB scan (the kernel looks up every page's folio mapping).
PAGES_RETURN_MASK = CAT_PFNZERO | CAT_HUGE
VEC_LEN = 16384  # regions per ioctl (384 KiB)


def decode_regions(buf: bytes | bytearray | memoryview, n: int | None = None) -> np.ndarray:
    """struct page_region {u64 start, end, categories} entries (the first n, or all) as (k, 3).

    A resumed walk may repeat a region already returned: regions that start before the end
    of an earlier one are dropped.
    """
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
        return decode_regions(self.regions_raw(start, end))


def probe(fd: int, pid: int) -> bool:
    """Whether PAGEMAP_SCAN works on this kernel (an empty scan of page 0)."""
    try:
        Scanner(fd, pid, vec_len=1)._ioctl(0, 4096)
    except Unsupported:
        return False
    return True
