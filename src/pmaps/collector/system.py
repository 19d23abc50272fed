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
from ..kernel.status import Ident, read_ident
from ..model import Known, Pages, ProcRec, Snapshot, SystemScan
from .observer import Observer
from .parallel import ordered_map
from .process import Options, Process, lookup_pages, pfns_visible
from .swap import machine_swap_refs

PARALLEL = 2


def scan_system(pids: list[int] | None = None, select: Callable[[Ident], bool] | None = None,
                caps: capsmod.Caps | None = None, scan: bool | None = None, include_self: bool = False) -> SystemScan:
    """Scan the given PIDs (default: every process) whose identity passes `select`."""
    caps = caps or capsmod.probe()
    opts = Options(flags=False, counts=False, scan=scan)
    me = os.getpid()
    todo = procfs.list_pids() if pids is None else list(pids)
    procs: list[ProcRec] = []
    parts: list[Pages] = []
    skipped: dict[str, list[int]] = {"exited": [], "denied": [], "missing": []}
    categories = True
    pos = 0

    def one(pid: int) -> tuple[str, int, Ident | None, Snapshot | None, bool]:
        """Scan one process: ("ok" | "skip" | "denied" | "exited" | "missing", pid, ident, snapshot, scanning)."""
        if pid == me or procfs.is_kernel_thread(pid):
            return "skip", pid, None, None, True
        try:
            ident = read_ident(pid)
            if select is not None and not select(ident):
                return "skip", pid, None, None, True
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
    for status, pid, ident, snap, scanning in ordered_map(one, todo, workers=PARALLEL, ahead=4 * PARALLEL):
        if status != "ok":
            if status != "skip":
                skipped[status].append(pid)
            continue
        assert snap is not None and ident is not None
        categories &= scanning
        bounds = snap.bounds().astype(np.int64) + pos
        n = len(snap.pages)
        procs.append(ProcRec(ident, snap.vmas, pos, pos + n, bounds[:, 0].copy(), bounds[:, 1].copy()))
        parts.append(snap.pages)
        pos += n
    pages = Pages.concat(parts)
    known = Known(pfn=caps.sys_admin, categories=categories and bool(procs), soft_dirty=caps.soft_dirty)
    if caps.sys_admin:
        known = _lookup_union(pages, known, None if include_self else Observer.read())
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
        observed = known.count and not include_self
        self_pss = roll.get("Private_Clean", 0) + roll.get("Private_Dirty", 0) if observed else roll.get("Pss", 0)
    except PmapsError:
        self_pss = 0
    complete = pids is None and select is None
    # A selection's SwapPss needs the holders of its swap entries outside the selection too.
    swap_refs = machine_swap_refs() if not complete and pmb.swapped(pages.pm).any() else None
    return SystemScan(procs, pages, known, skipped, meminfo, complete=complete, self_pss=self_pss,
                      swap_refs=swap_refs)


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
