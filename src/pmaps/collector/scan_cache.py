"""What the exporter's repeated scans carry from one to the next (ScanCache): each unchanged
process's pages as last read (Kept), so that scan_system (system.py) need not read it again page
by page, and its still pages as a Fixed part of the scan, their figures summed once.

Which kernel events make what kept stale is kernel/vmstat.py's gate; which process changed, its
change key (kernel/status.py read_mm_key)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.kpage import KPF
from ..kernel.maps import VmaTable
from ..model import Fixed, Pages, ProcRec
from ..model.system import page_slices
from ..numeric import PAGE_SHIFT, arange_runs, consecutive_runs

U64 = np.uint64
COLLAPSE_WINDOW = 1 << 16  # kept pages (256 MiB) per PAGEMAP_SCAN call looking for new PMDs


@dataclass
class Kept:
    """One process as the last scan read it, and its change key read just before (read_mm_key)."""

    key: tuple[int, ...]
    table: VmaTable  # its VMAs (the maps read's columns)
    pages: Pages  # with kflags and kcount
    scanning: bool
    still: np.ndarray | None = None  # still_pages(pages.pm, pages.kflags), made once while these pages stand
    runs: tuple[np.ndarray, np.ndarray] | None = None  # its pages' [start, end) runs of page numbers
    bounds: np.ndarray | None = None  # Snapshot.bounds() of its VMAs over its pages (int64)
    # Its still pages as a Fixed part of a scan (with the sums made of them), and the indexes and
    # VMA bounds of the others: made at the first scan that leaves them out, kept while they stand.
    fixed: Fixed | None = None
    rest: np.ndarray | None = None
    rest_pages: Pages | None = None  # (no kflags: the scan reads them)
    rest_bounds: np.ndarray | None = None

    def still_mask(self) -> np.ndarray:
        """Its still pages (still_pages), computed at the first reuse and kept with it: neither the
        entries nor those bits of the flags change while it is kept."""
        if self.still is None:
            assert self.pages.kflags is not None
            self.still = still_pages(self.pages.pm, self.pages.kflags, self.pages.cat)
        return self.still

    def split(self) -> tuple[Fixed, Pages, np.ndarray]:
        """Its still pages as a Fixed part (they are neither read again nor summed again), the
        others' columns as kept (no kpageflags: those are read afresh) and their VMA bounds."""
        if self.fixed is None or self.rest is None or self.rest_pages is None or self.rest_bounds is None:
            still = self.still_mask()
            self.fixed = Fixed(self.pages, still)
            self.rest = np.flatnonzero(~still)
            self.rest_pages = Pages(self.pages.vpn[self.rest], self.pages.pm[self.rest], self.pages.cat[self.rest])
            self.rest_bounds = np.stack(page_slices(self.table, self.rest_pages.vpn), axis=1)
        # (A new Pages each scan over the same columns: the scan adds its own kflags and kcount.)
        p = self.rest_pages
        return self.fixed, Pages(p.vpn, p.pm, p.cat), self.rest_bounds

    def changed(self) -> None:
        """Some of its still pages' kpageflags or entries were read again: what was made of them goes."""
        self.fixed = self.rest = self.rest_pages = self.rest_bounds = None

    def page_runs(self) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) page numbers of the runs of its pages (made once)."""
        if self.runs is None:
            first, lens = consecutive_runs(self.pages.vpn)
            start = self.pages.vpn[first].astype(np.int64)
            self.runs = (start, start + lens)
        return self.runs

    def reread(self, pid: int) -> Pages | None:
        """Its pages with their pagemap entries read again at the same addresses (after migrations
        only: vmstat.RELOCATES), the rest as kept; None if one of them is no longer there (then the
        process is read afresh)."""
        fd = pmb.open_pagemap(pid)
        try:
            pm = pmb.read_runs(fd, pid, *self.page_runs())
        finally:
            procfs.close(fd)
        if not pmb.populated(pm).all():
            return None
        return Pages(self.pages.vpn, pm, self.pages.cat)

    def pmds_unchanged(self, pid: int) -> bool:
        """Whether its PMD-mapped pages (PAGEMAP_SCAN's PAGE_IS_HUGE) are the ones kept: a collapse
        of its memory maps a new PMD where it had 512 pages (one that also fills a missing page adds
        to its RSS, mm/khugepaged.c __collapse_huge_page_copy_succeeded, and so to its key). Only
        where its pages are, in windows of at most COLLAPSE_WINDOW of them (pagemap.scan_windows):
        each ioctl holds its mmap_lock for one window's walk."""
        v = self.pages.vpn
        if not len(v):
            return True
        ws, we = pmb.scan_windows(*self.page_runs(), window=COLLAPSE_WINDOW)
        fd = pmb.open_pagemap(pid)
        try:
            scanner = pmb.Scanner(fd, pid, anyof=pmb.CAT_HUGE, returns=pmb.CAT_HUGE)
            regs = [scanner.regions(a << PAGE_SHIFT, b << PAGE_SHIFT) for a, b in zip(ws.tolist(), we.tolist())]
        finally:
            procfs.close(fd)
        r = np.concatenate(regs) if regs else np.zeros((0, 3), dtype=np.uint64)
        start = (r[:, 0] >> U64(PAGE_SHIFT)).astype(np.int64)
        now = arange_runs(start, (r[:, 1] >> U64(PAGE_SHIFT)).astype(np.int64) - start)
        return np.array_equal(now, v[(self.pages.cat & pmb.CAT_HUGE) != 0].astype(np.int64))


@dataclass
class ScanCache:
    """What repeated scans (the exporter's) carry from one scan to the next, so that a process that
    has not changed is not read again page by page.

    A process is reused when its change key (its stat and statm counters, threads and their run
    time: status.read_mm_key) is what it was just before its last read. Then its maps and pagemap
    entries are those of the last scan unless a migration, THP split or collapse, or KSM merge
    (vmstat.read_gate) happened since (a reclaim that unmaps a page changes the RSS in the key):
    they are not read again. The kpageflags of its present, exclusively mapped anonymous pages are
    those of the last scan too if reclaim did not run either (nothing else changes them): then only
    its other pages (file, shmem, shared, KSM, zero page) have their kpageflags and kpagecount read
    afresh, as other processes change them. After migrations alone its pagemap entries are read
    again at its kept addresses (the same pages, some at new PFNs; Kept.reread), after a khugepaged
    collapse its maps and pagemap; either way a page keeps its kpageflags where its entry reads the
    same. A reused process's kept pages are brought up to date in place, not copied again. Costs 26
    bytes a page kept in memory, up to max_bytes. Not caught: another process's GUP on a still
    process's pages (process_vm_readv, /proc/PID/mem: FOLL_TOUCH marks them accessed) can make one
    active without any counter moving; its LRU state then shows at the first scan that reads it
    afresh."""

    gate: tuple[tuple[str, int], ...] | None = None
    procs: dict[int, Kept] = field(default_factory=dict)
    reused: int = 0  # processes reused by the last scan
    reused_pages: int = 0  # pages whose pagemap entry and kpageflags were not read again
    max_bytes: int = 256 << 20  # at most this much kept (the smallest processes first)
    nbytes: int = 0  # kept now
    # Which kinds of kernel events happened between the last two scans (what stopped reuse):
    # reclaim (kpageflags read again), thp_split (both read again), migration (pagemap entries
    # read again), collapse (the processes whose PMDs changed read again).
    moved: dict[str, bool] = field(default_factory=dict)


KEPT_BYTES_PER_PAGE = 8 + 8 + 2 + 8  # vpn, pagemap entry, categories, kpageflags
# kpageflags bits of a page whose state only its own process, reclaim, migration, THP and KSM change.
_STILL = U64(1 << KPF["anon"])
_NOT_STILL = U64((1 << KPF["ksm"]) | (1 << KPF["zero_page"]) | (1 << KPF["huge"]))


def still_pages(pm: np.ndarray, kflags: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Present, exclusively mapped anonymous pages (not KSM, not the zero page, not hugetlb, not
    PMD-mapped): the pages whose pagemap entry and kpageflags change only through their own process
    or the kernel events vmstat.read_gate watches. (A PMD-mapped page's exclusive bit is its THP head
    page's: a forked child may map or drop its other pages by ptes: collector/lookup.py.)"""
    excl = pmb.present(pm) & ((pmb.top_byte(pm) & pmb.TOP_EXCLUSIVE) != 0) & ((cat & pmb.CAT_HUGE) == 0)
    return excl & ((kflags & _STILL) != 0) & ((kflags & _NOT_STILL) == 0)


def same_pages(fresh: Pages, kept: Pages) -> np.ndarray:
    """For each fresh page, its index in `kept` when it is there with the same pagemap entry and
    categories (the same page, in the same place), else -1."""
    if not len(kept):
        return np.full(len(fresh), -1, dtype=np.int64)
    if fresh.vpn is kept.vpn or (len(fresh) == len(kept) and np.array_equal(fresh.vpn, kept.vpn)):
        same = (kept.pm == fresh.pm) & (kept.cat == fresh.cat)  # the usual case: no page came or went
        return np.where(same, np.arange(len(fresh)), -1)
    i = np.minimum(np.searchsorted(kept.vpn, fresh.vpn), len(kept) - 1)
    same = (kept.vpn[i] == fresh.vpn) & (kept.pm[i] == fresh.pm) & (kept.cat[i] == fresh.cat)
    return np.where(same, i, -1)


def keep(cache: ScanCache, procs: list[ProcRec], pages: Pages, keys: dict[int, tuple[int, ...] | None],
          scanning: dict[int, bool], gate: tuple[tuple[str, int], ...] | None, reused: int, reused_pages: int,
          entries_of: dict[int, tuple[Kept, str]]) -> None:
    """Remember this scan's processes (their pages as read, with their change keys) for the next,
    the smallest first while they fit in cache.max_bytes: a small process saves a scan its whole
    read (maps, pagemap), a big one mostly kpageflags, at the same cost per page kept.
    entries_of: the reused processes whose pages are at the kept addresses: their kept pages stay,
    brought up to date in place (kpageflags; pagemap entries and categories where read again), not
    copied again."""
    cache.gate, cache.reused, cache.reused_pages = gate, reused, reused_pages
    cache.procs = {}
    cache.nbytes = 0
    if gate is None or pages.kflags is None:
        return
    per_page = KEPT_BYTES_PER_PAGE
    chosen: list[ProcRec] = []
    for p in sorted((p for p in procs if keys.get(p.pid) is not None), key=lambda p: p.npages):
        if cache.nbytes + p.npages * per_page > cache.max_bytes:
            break
        cache.nbytes += p.npages * per_page
        old, how = entries_of.get(p.pid, (None, ""))
        if old is not None and old.key == keys[p.pid] and len(old.pages) == p.npages:
            assert old.pages.kflags is not None
            # The same pages in the same places; the flags as this scan read (or reused) them.
            if how == "split":  # the still ones were not in the scan: they stand, with their Fixed
                assert old.rest is not None
                old.pages.kflags[old.rest] = pages.kflags[p.lo:p.hi]
            else:
                old.pages.kflags[:] = pages.kflags[p.lo:p.hi]
                old.changed()
            if how == "reread":  # new PFNs: a page's still state is worked out again
                old.pages.pm[:] = pages.pm[p.lo:p.hi]
                old.pages.cat[:] = pages.cat[p.lo:p.hi]
                old.still = None
            # else only reclaim's aging bits differ from those kept: the still mask stands.
            cache.procs[p.pid] = old
            continue
        assert p.fixed is None
        chosen.append(p)
    if not chosen:
        return
    # Copies (without map counts: a kept page is exclusive, its count 1), so that this scan's columns
    # are freed once its figures are made.
    idx = arange_runs(np.array([p.lo for p in chosen], dtype=np.int64),
                      np.array([p.hi - p.lo for p in chosen], dtype=np.int64))
    block = Pages(pages.vpn[idx], pages.pm[idx], pages.cat[idx], pages.kflags[idx])
    at = 0
    for p in chosen:
        n = p.hi - p.lo
        key = keys[p.pid]
        assert key is not None
        cache.procs[p.pid] = Kept(key, p.table, block.take(slice(at, at + n)), scanning[p.pid])
        at += n
