"""One scan of many processes: pagemap columns per process, then kpageflags/kpagecount read once
for the union of all their PFNs (not once per process).

Each process is opened with `collector.Process(pid, Options(flags=False, counts=False))`: PAGEMAP_SCAN
(or the pagemap fallback) only. The page columns of every process are concatenated; one
`PfnReader.lookup` then reads kpageflags for every present PFN and kpagecount only for the pages
pagemap does not already mark "exclusively mapped" (mapcount 1, see process.py).

Processes that exit mid-scan or cannot be read are counted in `SystemScan.skipped`, never dropped
silently; kernel threads (no mm) are not processes with memory and are left out. The scanning
process itself is left out too (its own memory changes while it scans). With a ScanCache
(scan_cache.py: the exporter's) unchanged processes are not read again.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..errors import AccessDenied, KernelThread, NoSuchProcess, PmapsError, ProcessGone, Unsupported
from ..kernel import caps as capsmod
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.kpage import PfnReader
from ..kernel.maps import VmaTable
from ..kernel.meminfo import read_meminfo
from ..kernel.smaps import read_rollup
from ..kernel.status import Ident, read_ident_rss, read_mm_key
from ..kernel.vmstat import COLLAPSES, RELOCATES, collapses_only_to_pmd, read_gate, split_gate
from ..model import Fixed, Known, Pages, ProcRec, RollupRec, SystemScan
from ..model.system import page_slices
from .lookup import lookup_pages, pfns_visible
from .observer import Observer
from .parallel import ordered_map, reader_threads
from .process import Options, Process
from .rollup import Observed, mm_owners, observed_pages, read_rollup_pages
from .scan_cache import KEPT_BYTES_PER_PAGE as KEPT_BYTES_PER_PAGE
from .scan_cache import Kept, ScanCache, keep, same_pages, still_pages
from .swap import machine_swap_refs

U64 = np.uint64


class _Read:
    """One process's VMAs (the maps read's columns: no Vma objects) and pages, as one() read or reused them."""

    __slots__ = ("pages", "table")

    def __init__(self, table: VmaTable, pages: Pages) -> None:
        self.table, self.pages = table, pages

    def bounds(self) -> np.ndarray:
        """[lo, hi) page-index slice of each VMA, shape (nvmas, 2), int64 (Snapshot.bounds)."""
        lo, hi = page_slices(self.table, self.pages.vpn)
        return np.stack([lo, hi], axis=1)


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
        "denied" | "exited" | "missing" | "kernel", pid, ident, _Read or (rollup, observed pages), scanning)."""
        if pid == me:
            return "skip", pid, None, None, True
        if procfs.is_kernel_thread(pid):
            # Named when asked for by PID (top -p 2): said, not dropped silently.
            return "skip" if pids is None else "kernel", pid, None, None, True
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
                        return status, pid, ident, _Read(kept.table, kept.pages), kept.scanning
                    if flags_same and (relocated or collapsed) and \
                            not (collapsed and not (kept.scanning and kept.pmds_unchanged(pid))):
                        # Not collapsed here: its pages are where they were, maybe at new PFNs.
                        if not relocated:
                            return "kept", pid, ident, _Read(kept.table, kept.pages), kept.scanning
                        again = kept.reread(pid)  # only the entries at its kept addresses
                        if again is not None:
                            recheck[pid] = kept
                            return "relocated", pid, ident, _Read(kept.table, again), kept.scanning
                    if flags_same:
                        recheck[pid] = kept  # pages may have moved: read pagemap, keep what reads the same
            with Process(pid, opts, caps) as proc:
                # Its table, not proc.snapshot(): a Snapshot's Vma objects cost 1 us a VMA.
                return "ok", pid, ident, _Read(proc.table, proc.pages(workers=1)), proc.scanning
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

    # Processes are read two at a time (one on a single CPU: process.reader_threads): most of the
    # time goes to the kernel (maps, PAGEMAP_SCAN, pagemap), which runs without the GIL.
    readers = reader_threads()
    big: list[Ident] = []
    # (first page in the scan, kept process, index of each page in its pages or -1) of processes read
    # again whose pages may be the kept ones (recheck)
    kept_parts: list[tuple[int, Kept, np.ndarray]] = []
    # Reused processes whose pages are at the kept addresses: kept in place (see scan_cache.keep), with how
    # this scan had them: "split" (still pages left out as Fixed), "same" (all of them, entries as
    # kept) or "reread" (their pagemap entries or categories read again).
    entries_of: dict[int, tuple[Kept, str]] = {}
    reused_pages = 0  # pages of the processes kept whole (status "kept")
    stale: list[tuple[int, int]] = []  # their pages' slices: pagemap entries as last read
    unread = 0  # processes whose maps and pagemap were not read again
    for status, pid, ident, snap, scanning in ordered_map(one, todo, workers=readers, ahead=4 * readers):
        if status == "reduce":
            assert ident is not None
            big.append(ident)
            continue
        if status not in ("ok", "kept", "entries", "relocated", "rollup"):
            if status != "skip":
                skipped.setdefault(status, []).append(pid)
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
        assert isinstance(snap, _Read)
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
                    same.bounds = snap.bounds()
                bounds = same.bounds + pos
            else:
                bounds = snap.bounds() + pos
        n = len(snap.pages)
        procs.append(ProcRec(ident, snap.table, pos, pos + n, bounds[:, 0].copy(), bounds[:, 1].copy(), fixed))
        if status in ("kept", "entries"):
            unread += 1
            entries_of[pid] = (cache.procs[pid], "split" if fixed is not None else "same")  # type: ignore[union-attr]
            stale.append((pos, pos + n))
            reused_pages += n + n_fixed if fixed is not None else 0
            snap.pages = Pages(snap.pages.vpn, snap.pages.pm, snap.pages.cat)
        elif pid in recheck:
            k = recheck[pid]
            kept_parts.append((pos, k, same_pages(snap.pages, k.pages)))
            if len(snap.pages) == len(k.pages) and np.array_equal(snap.pages.vpn, k.pages.vpn):
                k.table = snap.table
                entries_of[pid] = (k, "reread")
        parts.append(snap.pages)
        pos += n
    if reduce is not None:
        for ident in big:  # one at a time, each read on two threads (Process.chunks)
            try:
                with Process(ident.pid, Options(scan=scan, include_self=include_self), caps) as proc:
                    sums = reduce(proc)
                    t = proc.table  # (not proc.vmas: no Vma objects)
                    span = (int(t.start[0]), int(t.end[-1])) if len(t) else (0, 0)
            except (KernelThread, AccessDenied, ProcessGone, NoSuchProcess, Unsupported) as err:
                skipped["denied" if isinstance(err, AccessDenied) else "exited"].append(ident.pid)
                continue
            rollups.append(RollupRec(ident, {}, ident.pid, sums=sums, span=span))
    pages = Pages.concat(parts)
    known = Known(pfn=caps.sys_admin, categories=categories and bool(procs), soft_dirty=caps.soft_dirty)
    if caps.sys_admin:
        known = _lookup_union(pages, known, observer, kept_parts, stale)
    if cache is not None:
        keep(cache, procs, pages, keys, scanning_of, gate if known.flags and known.count else None,
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
                still[lo:hi] = (idx >= 0) & still_pages(p.pm[j], p.kflags[j], p.cat[j])
            need = np.flatnonzero(~still)
            sub = Pages(pages.vpn[need], pm[need], pages.cat[need])
            lookup_pages(sub, reader, observer=observer)
            assert sub.kflags is not None and sub.kcount is not None
            flags[need] = sub.kflags
            count = np.ones(len(pages), dtype=U64)
            count[need] = sub.kcount
            pages.kflags, pages.kcount = flags, count
    return Known(pfn=True, flags=True, count=True, categories=known.categories, soft_dirty=known.soft_dirty)
