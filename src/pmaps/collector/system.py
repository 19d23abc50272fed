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

import numpy as np

from ..errors import AccessDenied, KernelThread, NoSuchProcess, PmapsError, ProcessGone, Unsupported
from ..kernel import caps as capsmod
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.kpage import PfnReader
from ..kernel.meminfo import read_meminfo
from ..kernel.smaps import read_rollup
from ..kernel.status import Ident, read_ident_rss
from ..model import Known, Pages, ProcRec, RollupRec, Snapshot, SystemScan
from .observer import Observer
from .parallel import ordered_map
from .process import Options, Process, lookup_pages, pfns_visible
from .rollup import mm_owners, observed_pages, read_rollup_pages
from .swap import machine_swap_refs

PARALLEL = 2


def scan_system(pids: list[int] | None = None, select: Callable[[Ident], bool] | None = None,
                caps: capsmod.Caps | None = None, scan: bool | None = None, include_self: bool = False,
                rollup_max: int | None = None, reduce: Callable[[Process], dict[str, int]] | None = None
                ) -> SystemScan:
    """Scan the given PIDs (default: every process) whose identity passes `select`.

    rollup_max: read processes whose RSS is at most this many bytes from their smaps_rollup (see
    rollup.py; every readable process when PFNs are hidden, since pages then give no PSS) and only
    the bigger ones page by page; None reads every process page by page. With `reduce`, those bigger
    ones are not kept page by page: each is opened alone (Options(): flags, counts, observer) and
    reduce(process) turns its streamed pages into the raw sums kept (bounded memory)."""
    caps = caps or capsmod.probe()
    opts = Options(flags=False, counts=False, scan=scan)
    me = os.getpid()
    todo = procfs.list_pids() if pids is None else list(pids)
    procs: list[ProcRec] = []
    parts: list[Pages] = []
    rollups: list[RollupRec] = []
    observed: list[Pages] = []  # rollup processes' pages that pmaps maps too
    skipped: dict[str, list[int]] = {"exited": [], "denied": [], "missing": []}
    categories = True
    pos = opos = 0
    observer = None if include_self or not caps.sys_admin else Observer.read()

    def one(pid: int) -> tuple[str, int, Ident | None, object, bool]:
        """Scan one process: ("ok" | "rollup" | "skip" | "denied" | "exited" | "missing", pid, ident,
        snapshot or (rollup, observed pages), scanning)."""
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
    for status, pid, ident, snap, scanning in ordered_map(one, todo, workers=PARALLEL, ahead=4 * PARALLEL):
        if status == "reduce":
            assert ident is not None
            big.append(ident)
            continue
        if status not in ("ok", "rollup"):
            if status != "skip":
                skipped[status].append(pid)
            continue
        assert ident is not None
        if status == "rollup":
            assert isinstance(snap, tuple)
            fields: dict[str, int] = snap[0]
            own: Pages | None = snap[1]
            n = 0 if own is None else len(own)
            rollups.append(RollupRec(ident, fields, pid, opos, opos + n))
            if own is not None:
                observed.append(own)
            opos += n
            continue
        assert isinstance(snap, Snapshot)
        categories &= scanning
        bounds = snap.bounds().astype(np.int64) + pos
        n = len(snap.pages)
        procs.append(ProcRec(ident, snap.vmas, pos, pos + n, bounds[:, 0].copy(), bounds[:, 1].copy()))
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
        known = _lookup_union(pages, known, observer)
    mm_owners(rollups)
    seen: Pages | None = None
    mine = None
    if observer is not None and observed:
        # As the kernel counts them (pmaps included); analysis takes pmaps' `mine` out.
        seen, mine = observed_pages(observed, [r for r in rollups if r.sums is None], observer)
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
                      swap_refs=swap_refs, rollups=rollups, observed=seen, observed_mine=mine)


def _lookup_union(pages: Pages, known: Known, observer: Observer | None) -> Known:
    """kpageflags for every present page and kpagecount for the non-exclusive ones, in one pass."""
    if not pfns_visible(pages):
        return Known(categories=known.categories, soft_dirty=known.soft_dirty)
    try:
        reader = PfnReader(want_flags=True, want_count=True)
    except PmapsError:
        return known
    with reader:
        if not (reader.can_flags and reader.can_count):
            return known
        lookup_pages(pages, reader, observer=observer)
    return Known(pfn=True, flags=True, count=True, categories=known.categories, soft_dirty=known.soft_dirty)
