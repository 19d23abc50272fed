"""/proc/PID/pagemap: the entry layout (Documentation/admin-guide/mm/pagemap.rst) and the
PAGEMAP_SCAN ioctl (Linux 6.7+, man 2const PAGEMAP_SCAN) that finds populated regions without
reading holes. Decoders are pure (numpy); `read_runs` and pagemap_scan's `Scanner` (the ioctl and
the pacing of reads, without numpy) are the thin readers.

PAGEMAP_SCAN: the kernel walks page tables and merges adjacent pages of equal categories into
one region, so unpopulated space (a 64 TiB PROT_NONE reservation) costs nothing.
"""
from __future__ import annotations

import numpy as np

from ..numeric import arange_runs, merge_intervals, seg_offsets
from . import pagemap_scan, procfs
from .native import Core

# PAGEMAP_SCAN and the pacing of reads, without numpy (pagemap_scan.py), under their names here too
# (but PACER: one state per thread for reads and scans, pagemap_scan's).
from .pagemap_scan import (  # noqa: F401  (re-exported)
    ARG,
    CAT_FILE,
    CAT_GUARD,
    CAT_HUGE,
    CAT_PFNZERO,
    CAT_PRESENT,
    CAT_SHMEM_SWAP,
    CAT_SOFT_DIRTY,
    CAT_SWAPPED,
    CAT_UNKNOWN,
    CAT_WPALLOWED,
    CAT_WRITTEN,
    PACE_GAP,
    PACE_HOLD,
    PAGEMAP_SCAN,
    PAGES_RETURN_MASK,
    RETURN_MASK,
    SCAN_MAX_PAGES,
    TASK_SIZE_MAX,
    VEC_LEN,
    Pacer,
    Scanner,
    probe,
)

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
            pagemap_scan.PACER.before(pid)
            got = procfs.pread_into(fd, mv[pos * 8 : (pos + k) * 8], a * 8, pid, path)
            pagemap_scan.PACER.after()
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
        pagemap_scan.PACER.before(pid)
        try:
            with procfs.translate(pid, path, started=True):
                got = core.read_matching(fd, s, e, gap, pfns)
        finally:
            pagemap_scan.PACER.after()
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


# Bit 62 also marks entries that are not swap (include/linux/swap.h, fs/proc/task_mmu.c
# pte_to_pagemap_entry, 6.x): pte markers (guard regions, uffd-wp on an empty pte, poison) and
# migration, hwpoison and device entries, which smaps never counts as Swap (non_swap_entry()). A guard
# marker carries bit 58 (6.15+); to root, the others show their swap type: the special types are the
# top ones (SWP_PTE_MARKER is 31 since 6.5), above MAX_SWAPFILES, which is 24-27 by configuration (32
# less the device, migration, hwpoison and marker types). Without root the frame is 0, and a uffd-wp
# marker (bits 62 and 57) cannot be told from a swapped page under uffd-wp protection.
SWAP_TYPE_SPECIAL = 24  # the lowest MAX_SWAPFILES of a 6.x configuration: types from here on are not swap files
TOP_SWAPPED = 1 << (PM_SWAPPED - 56)
TOP_GUARD = 1 << (PM_GUARD - 56)
TOP_UFFD_WP = 1 << (PM_UFFD_WP - 56)


def any_swapped_bit(entries: np.ndarray) -> bool:
    """Has any entry bit 62 (swapped or a marker) and not 63? One signed compare: present entries
    are negative as int64, and bit 62 alone is at least 2**62."""
    return bool(len(entries)) and bool((np.ascontiguousarray(entries).view(np.int64) >= (1 << PM_SWAPPED)).any())


def not_swap(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: bit 62 set, but not a swap pte (a guard marker, or to root a special swap type)."""
    top = top_byte(entries)
    marked = (top & TOP_SWAPPED) != 0
    out = marked & ((top & TOP_GUARD) != 0)
    frame = entries & PM_PFN_MASK
    return out | (marked & (frame != 0) & ((frame & PM_SWAP_TYPE_MASK) >= SWAP_TYPE_SPECIAL))


def swapped(entries: np.ndarray) -> np.ndarray:
    """Bool per entry: a swap pte (what smaps counts as Swap), not a marker or migration entry."""
    if not any_swapped_bit(entries):  # the usual case: one compare
        return np.zeros(len(entries), dtype=bool)
    return bit(entries, PM_SWAPPED) & ~not_swap(entries)


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


SHMEM_SWAP_ENTRY = (1 << PM_SWAPPED) | (1 << PM_FILE)


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
