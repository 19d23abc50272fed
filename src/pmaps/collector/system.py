"""One scan of many processes: pagemap columns per process, then kpageflags/kpagecount read once
for the union of all their PFNs (not once per process).

Each process is opened with `collector.Process(pid, Options(flags=False, counts=False))`: PAGEMAP_SCAN
(or the pagemap fallback) only. The page columns of every process are concatenated; one
`PfnReader.lookup` then reads kpageflags for every present PFN and kpagecount only for the pages
pagemap does not already mark "exclusively mapped" (mapcount 1, see process.py).

Processes that exit mid-scan or cannot be read are counted in `SystemScan.skipped`, never dropped
silently; kernel threads (no mm) are not processes with memory and are left out. The scanning
process itself is left out too (its own memory changes while it scans).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import AccessDenied, KernelThread, NoSuchProcess, PmapsError, ProcessGone, Unsupported
from ..kernel import caps as capsmod
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.kpage import KPF, PfnReader
from ..kernel.maps import Vma
from ..kernel.meminfo import read_meminfo
from ..kernel.smaps import read_rollup
from ..kernel.status import Ident, read_ident_rss, read_mm_key
from ..kernel.vmstat import COLLAPSES, RELOCATES, collapses_only_to_pmd, read_gate, split_gate
from ..model import Fixed, Known, Pages, ProcRec, RollupRec, Snapshot, SystemScan
from ..numeric import PAGE_SHIFT, arange_runs, consecutive_runs
from .observer import Observer
from .parallel import ordered_map
from .process import Options, Process, lookup_pages, pfns_visible
from .rollup import Observed, mm_owners, observed_pages, read_rollup_pages
from .swap import machine_swap_refs

PARALLEL = 2
U64 = np.uint64
COLLAPSE_WINDOW = 1 << 16  # kept pages (256 MiB) per PAGEMAP_SCAN call looking for new PMDs


@dataclass
class Kept:
    """One process as the last scan read it, and its change key read just before (read_mm_key)."""

    key: tuple[int, ...]
    vmas: list[Vma]
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
            self.still = still_pages(self.pages.pm, self.pages.kflags)
        return self.still

    def split(self) -> tuple[Fixed, Pages, np.ndarray]:
        """Its still pages as a Fixed part (they are neither read again nor summed again), the
        others' columns as kept (no kpageflags: those are read afresh) and their VMA bounds."""
        if self.fixed is None or self.rest is None or self.rest_pages is None or self.rest_bounds is None:
            still = self.still_mask()
            self.fixed = Fixed(self.pages, still)
            self.rest = np.flatnonzero(~still)
            self.rest_pages = Pages(self.pages.vpn[self.rest], self.pages.pm[self.rest], self.pages.cat[self.rest])
            self.rest_bounds = Snapshot(0, "", self.vmas, self.rest_pages, Known()).bounds().astype(np.int64)
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
        where its pages are, in groups of runs of about COLLAPSE_WINDOW pages: each ioctl holds its
        mmap_lock for one group's walk."""
        v = self.pages.vpn
        if not len(v):
            return True
        starts, ends = self.page_runs()
        group = np.cumsum(ends - starts) // COLLAPSE_WINDOW
        first = np.flatnonzero(np.diff(group, prepend=-1))
        last = np.append(first[1:], len(starts)) - 1
        fd = pmb.open_pagemap(pid)
        try:
            scanner = pmb.Scanner(fd, pid, anyof=pmb.CAT_HUGE, returns=pmb.CAT_HUGE)
            regs = [scanner.regions(a << PAGE_SHIFT, b << PAGE_SHIFT)
                    for a, b in zip(starts[first].tolist(), ends[last].tolist())]
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


def scan_system(pids: list[int] | None = None, select: Callable[[Ident], bool] | None = None,
                caps: capsmod.Caps | None = None, scan: bool | None = None, include_self: bool = False,
                rollup_max: int | None = None, reduce: Callable[[Process], dict[str, int]] | None = None,
                cache: ScanCache | None = None) -> SystemScan:
    """Scan the given PIDs (default: every process) whose identity passes `select`.

    rollup_max: read processes whose RSS is at most this many bytes from their smaps_rollup (see
    rollup.py; every readable process when PFNs are hidden, since pages then give no PSS) and only
    the bigger ones page by page; None reads every process page by page. With `reduce`, those bigger
    ones are not kept page by page: each is opened alone (Options(): flags, counts, observer) and
    reduce(process) turns its streamed pages into the raw sums kept (bounded memory).
    cache: processes read page by page and unchanged since the last scan with that cache are not
    read again (see ScanCache)."""
    caps = caps or capsmod.probe()
    if cache is not None and not caps.sys_admin:
        cache = None  # without kpageflags there is nothing worth keeping
    gate = read_gate() if cache is not None else None
    # Since the last scan, for a process whose key did not change: flags_same, no event changed a
    # still page's kpageflags; entries_same, none changed a pagemap entry or mapping of its either
    # (a swap-out or reclaim that unmaps a page changes the process's RSS, which is in its key).
    flags_same = entries_same = False
    relocated = collapsed = False  # migrations moved; khugepaged collapsed, and its PMDs tell where
    if cache is not None and gate is not None and cache.gate is not None:
        (g_ag, g_sp, g_mv), (c_ag, c_sp, c_mv) = split_gate(gate), split_gate(cache.gate)
        flags_same, entries_same = g_ag == c_ag and g_sp == c_sp, g_mv == c_mv and g_sp == c_sp
        moved = {k for k, _ in set(g_mv) ^ set(c_mv)}
        other = {k for k in moved if not k.startswith(RELOCATES + COLLAPSES)}  # e.g. ksmd, before per-process counts
        migrations = any(k.startswith(RELOCATES) for k in moved)
        collapses = any(k.startswith(COLLAPSES) for k in moved)
        # Told apart per process only when nothing else moved, and a collapse shows as a PMD (no
        # mTHP collapse, which would not): else every process is read again.
        if not other and not (collapses and not collapses_only_to_pmd()):
            relocated, collapsed = migrations, collapses
        cache.moved = {"reclaim": g_ag != c_ag, "thp_split": g_sp != c_sp,
                       "migration": bool(other) or migrations, "collapse": collapses}
    elif cache is not None:
        cache.moved = {}
    opts = Options(flags=False, counts=False, scan=scan)
    me = os.getpid()
    todo = procfs.list_pids() if pids is None else list(pids)
    procs: list[ProcRec] = []
    parts: list[Pages] = []
    rollups: list[RollupRec] = []
    observed: list[Observed] = []  # rollup processes' pages that pmaps maps too
    skipped: dict[str, list[int]] = {"exited": [], "denied": [], "missing": []}
    categories = True
    pos = opos = 0
    observer = None if include_self or not caps.sys_admin else Observer.read()

    keys: dict[int, tuple[int, ...] | None] = {}
    recheck: dict[int, Kept] = {}
    scanning_of: dict[int, bool] = {}

    def one(pid: int) -> tuple[str, int, Ident | None, object, bool]:
        """Scan one process: ("ok" | "kept" | "entries" | "relocated" | "rollup" | "reduce" | "skip" |
        "denied" | "exited" | "missing", pid, ident, snapshot or (rollup, observed pages), scanning)."""
        if pid == me or procfs.is_kernel_thread(pid):
            return "skip", pid, None, None, True
        try:
            ident, rss = read_ident_rss(pid)
            if select is not None and not select(ident):
                return "skip", pid, None, None, True
            if rollup_max is not None and (rss <= rollup_max or not caps.sys_admin):
                return "rollup", pid, ident, read_rollup_pages(pid, observer), True
            if rollup_max is not None and reduce is not None:
                return "reduce", pid, ident, None, True
            if cache is not None:
                # Read before the pages: a change during the read shows at the next scan.
                key = keys[pid] = read_mm_key(pid)
                kept = cache.procs.get(pid) if key is not None else None
                if kept is not None and kept.key == key:
                    if entries_same:  # its maps and pagemap as last read; kpageflags reused if flags_same
                        status = "kept" if flags_same else "entries"
                        return status, pid, ident, Snapshot(pid, ident.comm, kept.vmas, kept.pages, Known()), \
                            kept.scanning
                    if flags_same and (relocated or collapsed) and \
                            not (collapsed and not (kept.scanning and kept.pmds_unchanged(pid))):
                        # Not collapsed here: its pages are where they were, maybe at new PFNs.
                        if not relocated:
                            return "kept", pid, ident, Snapshot(pid, ident.comm, kept.vmas, kept.pages, Known()), \
                                kept.scanning
                        again = kept.reread(pid)  # only the entries at its kept addresses
                        if again is not None:
                            recheck[pid] = kept
                            return "relocated", pid, ident, Snapshot(pid, ident.comm, kept.vmas, again, Known()), \
                                kept.scanning
                    if flags_same:
                        recheck[pid] = kept  # pages may have moved: read pagemap, keep what reads the same
            with Process(pid, opts, caps) as proc:
                return "ok", pid, ident, proc.snapshot(workers=1), proc.scanning
        except KernelThread:
            return "skip", pid, None, None, True
        except AccessDenied:
            return "denied", pid, None, None, True
        except ProcessGone:
            return "exited", pid, None, None, True
        except NoSuchProcess:
            return "missing", pid, None, None, True
        except Unsupported:  # a zombie: its memory is gone
            return "exited", pid, None, None, True

    # Processes are read PARALLEL at a time: most of the time goes to the kernel (maps,
    # PAGEMAP_SCAN, pagemap), which runs without the GIL.
    big: list[Ident] = []
    # (first page in the scan, kept process, index of each page in its pages or -1) of processes read
    # again whose pages may be the kept ones (recheck)
    kept_parts: list[tuple[int, Kept, np.ndarray]] = []
    # Reused processes whose pages are at the kept addresses: kept in place (see _keep), with how
    # this scan had them: "split" (still pages left out as Fixed), "same" (all of them, entries as
    # kept) or "reread" (their pagemap entries or categories read again).
    entries_of: dict[int, tuple[Kept, str]] = {}
    reused_pages = 0  # pages of the processes kept whole (status "kept")
    stale: list[tuple[int, int]] = []  # their pages' slices: pagemap entries as last read
    unread = 0  # processes whose maps and pagemap were not read again
    for status, pid, ident, snap, scanning in ordered_map(one, todo, workers=PARALLEL, ahead=4 * PARALLEL):
        if status == "reduce":
            assert ident is not None
            big.append(ident)
            continue
        if status not in ("ok", "kept", "entries", "relocated", "rollup"):
            if status != "skip":
                skipped[status].append(pid)
            continue
        assert ident is not None
        if status == "rollup":
            assert isinstance(snap, tuple)
            fields: dict[str, int] = snap[0]
            own: Observed | None = snap[1]
            n = 0 if own is None else len(own[0])
            rollups.append(RollupRec(ident, fields, pid, opos, opos + n))
            if own is not None:
                observed.append(own)
            opos += n
            continue
        assert isinstance(snap, Snapshot)
        categories &= scanning
        scanning_of[pid] = scanning
        n_fixed = 0
        fixed: Fixed | None = None
        if status == "kept":  # its still pages stay out of the scan (Fixed): only the others are looked up
            kept = cache.procs[pid]  # type: ignore[union-attr]
            fixed, snap.pages, bounds = kept.split()
            bounds = bounds + pos
            n_fixed = len(fixed)
        else:
            same = (cache.procs.get(pid) if status == "entries" else  # type: ignore[union-attr]
                    recheck.get(pid) if status == "relocated" else None)
            if same is not None:  # the same VMAs over the same pages
                if same.bounds is None:
                    same.bounds = snap.bounds().astype(np.int64)
                bounds = same.bounds + pos
            else:
                bounds = snap.bounds().astype(np.int64) + pos
        n = len(snap.pages)
        procs.append(ProcRec(ident, snap.vmas, pos, pos + n, bounds[:, 0].copy(), bounds[:, 1].copy(), fixed))
        if status in ("kept", "entries"):
            unread += 1
            entries_of[pid] = (cache.procs[pid], "split" if fixed is not None else "same")  # type: ignore[union-attr]
            stale.append((pos, pos + n))
            reused_pages += n + n_fixed if fixed is not None else 0
            snap.pages = Pages(snap.pages.vpn, snap.pages.pm, snap.pages.cat)
        elif pid in recheck:
            k = recheck[pid]
            kept_parts.append((pos, k, _same_pages(snap.pages, k.pages)))
            if len(snap.pages) == len(k.pages) and np.array_equal(snap.pages.vpn, k.pages.vpn):
                k.vmas = snap.vmas
                entries_of[pid] = (k, "reread")
        parts.append(snap.pages)
        pos += n
    if reduce is not None:
        for ident in big:  # one at a time, each read on two threads (Process.chunks)
            try:
                with Process(ident.pid, Options(scan=scan, include_self=include_self), caps) as proc:
                    sums = reduce(proc)
                    span = (proc.vmas[0].start, proc.vmas[-1].end) if proc.vmas else (0, 0)
            except (KernelThread, AccessDenied, ProcessGone, NoSuchProcess, Unsupported) as err:
                skipped["denied" if isinstance(err, AccessDenied) else "exited"].append(ident.pid)
                continue
            rollups.append(RollupRec(ident, {}, ident.pid, sums=sums, span=span))
    pages = Pages.concat(parts)
    known = Known(pfn=caps.sys_admin, categories=categories and bool(procs), soft_dirty=caps.soft_dirty)
    if caps.sys_admin:
        known = _lookup_union(pages, known, observer, kept_parts, stale)
    if cache is not None:
        _keep(cache, procs, pages, keys, scanning_of, gate if known.flags and known.count else None,
              unread, reused_pages, entries_of)
    mm_owners(rollups)
    seen: Pages | None = None
    mine = at = None
    if observer is not None and observed:
        # One page per PFN, counted as the kernel counts them (pmaps included); analysis takes
        # pmaps' `mine` out.
        seen, mine, at = observed_pages(observed, observer)
        _lookup_union(seen, known, None)
    try:
        meminfo = read_meminfo()
    except PmapsError:
        meminfo = {}
    try:
        # The scanner leaves itself out (its memory changes as it scans), yet its pages are in
        # /proc/meminfo: the kernel's own figure for it keeps the reconciliation honest. With its
        # own mappings taken out of the others' map counts, the pages it shares are in their PSS
        # in full, and only the pages it alone maps (its USS) are its own.
        roll = read_rollup(me)
        subtracted = known.count and not include_self
        self_pss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0) if subtracted else roll.get("Pss", 0)
    except PmapsError:
        self_pss = 0
    complete = pids is None and select is None
    # A selection's SwapPss needs the holders of its swap entries outside the selection too.
    # (Also when some processes were read from smaps_rollup: their swap entries are not in the pages.)
    swap_refs = machine_swap_refs() if (not complete or rollups) and pmb.swapped(pages.pm).any() else None
    return SystemScan(procs, pages, known, skipped, meminfo, complete=complete, self_pss=self_pss,
                      swap_refs=swap_refs, rollups=rollups, observed=seen, observed_mine=mine, observed_at=at)


def _same_pages(fresh: Pages, kept: Pages) -> np.ndarray:
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


def _lookup_union(pages: Pages, known: Known, observer: Observer | None,
                  kept: list[tuple[int, Kept, np.ndarray]] | None = None,
                  stale: list[tuple[int, int]] | None = None) -> Known:
    """kpageflags for every present page and kpagecount for the non-exclusive ones, in one pass.
    kept: processes read again whose pages are the kept ones where their entries read the same:
    those that nothing but reclaim and co. change (still_pages) keep their kpageflags (and their
    count, 1) from the last scan. (A process reused whole has its still pages out of `pages`
    altogether: ProcRec.fixed.) stale: [lo, hi) page slices whose
    pagemap entries are as an earlier scan read them: the exclusive bit (56) of their file and
    shared pages (bit 61) is not trusted, as another process mapping one since clears it without
    their owner's key moving; those pages' map counts are read."""
    if not pfns_visible(pages):
        return Known(categories=known.categories, soft_dirty=known.soft_dirty)
    try:
        reader = PfnReader(want_flags=True, want_count=True)
    except PmapsError:
        return known
    with reader:
        if not (reader.can_flags and reader.can_count):
            return known
        pm = pages.pm
        if stale:
            pm = pm.copy()
            doubt = ~(U64(1) << U64(pmb.PM_EXCLUSIVE))
            for lo, hi in stale:
                # (A private anonymous page gains a mapper only by its own process's fork or by KSM,
                # both in its key: its bit stands.)
                seg = pm[lo:hi]
                seg[pmb.bit(seg, pmb.PM_FILE)] &= doubt
        if not kept:
            view = Pages(pages.vpn, pm, pages.cat)
            lookup_pages(view, reader, observer=observer)
            pages.kflags, pages.kcount = view.kflags, view.kcount
        else:
            flags = np.zeros(len(pages), dtype=U64)
            still = np.zeros(len(pages), dtype=bool)
            for lo, k, idx in kept:
                p = k.pages
                assert p.kflags is not None
                j = np.maximum(idx, 0)
                hi = lo + len(idx)
                flags[lo:hi] = p.kflags[j]
                still[lo:hi] = (idx >= 0) & still_pages(p.pm[j], p.kflags[j])
            need = np.flatnonzero(~still)
            sub = Pages(pages.vpn[need], pm[need], pages.cat[need])
            lookup_pages(sub, reader, observer=observer)
            assert sub.kflags is not None and sub.kcount is not None
            flags[need] = sub.kflags
            count = np.ones(len(pages), dtype=U64)
            count[need] = sub.kcount
            pages.kflags, pages.kcount = flags, count
    return Known(pfn=True, flags=True, count=True, categories=known.categories, soft_dirty=known.soft_dirty)


def still_pages(pm: np.ndarray, kflags: np.ndarray) -> np.ndarray:
    """Present, exclusively mapped anonymous pages (not KSM, not the zero page, not hugetlb): the
    pages whose pagemap entry and kpageflags change only through their own process or the kernel
    events vmstat.read_gate watches."""
    excl = pmb.present(pm) & ((pmb.top_byte(pm) & pmb.TOP_EXCLUSIVE) != 0)
    return excl & ((kflags & _STILL) != 0) & ((kflags & _NOT_STILL) == 0)


def _keep(cache: ScanCache, procs: list[ProcRec], pages: Pages, keys: dict[int, tuple[int, ...] | None],
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
        cache.procs[p.pid] = Kept(key, p.vmas, block.take(slice(at, at + n)), scanning[p.pid])
        at += n

