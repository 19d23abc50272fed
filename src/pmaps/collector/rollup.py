"""top's fast path: a process's figures from its own smaps_rollup, the kernel's footprint.

smaps_rollup already adds up every figure top shows by default (Rss, Pss, Private_*, Shared_*,
Swap, SwapPss, AnonHugePages, KSM, *_Hugetlb), so for those columns no page needs reading. Two
corrections keep the rows what the page-level path gives:
- The observer effect (observer.py): while pmaps runs, its own mappings of libc, ld.so and the
  interpreter raise the map count of pages it shares with the target. The target's pages of the
  files pmaps maps (a few hundred per process) are read from its pagemap and the figures of just
  those pages are recomputed without pmaps (analysis/system.py).
- Processes sharing one mm (CLONE_VM without CLONE_THREAD) each show the whole mm; kcmp(KCMP_VM)
  proves which do, so totals count the mm once.
The cost of smaps_rollup to the target: the kernel walks every page table under the mmap_lock,
about 10 ms per GiB resident here (mmap/munmap wait meanwhile), so only processes up to a size
(`rollup_max`) are read this way; bigger ones are read page-level, in short PAGEMAP_SCAN windows.
"""
from __future__ import annotations

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.kcmp import same_mm
from ..kernel.maps import PAGE_SHIFT
from ..kernel.pagemap import CAT_UNKNOWN
from ..kernel.smaps import read_rollup
from ..model import Pages, RollupRec
from ..numeric import arange_runs
from .observer import Observer

U64 = np.uint64


def read_rollup_pages(pid: int, observer: Observer | None) -> tuple[dict[str, int], Pages | None]:
    """smaps_rollup of pid, and the pagemap entries of its VMAs of the files `observer` (pmaps) maps
    too (None: none). Not filtered here: `observed_pages` keeps the pages pmaps maps, for every
    process at once (numpy calls on a few hundred entries cost more than the reads)."""
    fields = read_rollup(pid)
    if observer is None or not len(observer):
        return fields, None
    spans = observer.file_ranges(procfs.read_file(pid, "maps", started=True))
    if not spans:
        return fields, None
    starts = np.array([a >> PAGE_SHIFT for a, _ in spans], dtype=U64)
    ends = np.array([b >> PAGE_SHIFT for _, b in spans], dtype=U64)
    fd = procfs.open_pagemap(pid)
    try:
        pm = pmb.read_runs(fd, pid, starts, ends)
    finally:
        procfs.close(fd)
    vpn = arange_runs(starts, (ends - starts).astype(np.int64))
    return fields, Pages(vpn, pm, np.zeros(0, dtype=np.uint16))


def observed_pages(parts: list[Pages], recs: list[RollupRec], observer: Observer) -> tuple[Pages, np.ndarray]:
    """The present pages of `parts` (read_rollup_pages, in the order of `recs`' [lo, hi)) that the
    observer maps too, with recs' bounds moved to match; and how often the observer maps each."""
    if not parts:
        return Pages.empty(), np.zeros(0, dtype=np.int64)
    vpn = np.concatenate([p.vpn for p in parts])
    pm = np.concatenate([p.pm for p in parts])
    keep = pmb.present(pm)
    mine = np.zeros(len(pm), dtype=np.int64)
    mine[keep] = observer.mine(pm[keep] & pmb.PM_PFN_MASK)
    keep &= mine > 0
    before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64))).tolist()
    for r in recs:
        r.lo, r.hi = before[r.lo], before[r.hi]
    n = int(keep.sum())
    return Pages(vpn[keep], pm[keep], np.full(n, CAT_UNKNOWN, dtype=np.uint16)), mine[keep]


def mm_owners(recs: list[RollupRec]) -> None:
    """Set each record's `mm` to the first record's pid sharing its mm (kcmp KCMP_VM).

    Only records whose rollups cover the same address span are asked: one mm prints one span."""
    by_span: dict[tuple[int, int], list[RollupRec]] = {}
    for r in recs:
        span = r.span if r.sums is not None else (r.fields.get("start", 0), r.fields.get("end", 0))
        by_span.setdefault(span, []).append(r)
    for group in by_span.values():
        found: list[RollupRec] = []
        for r in group:
            for f in found:
                if same_mm(f.pid, r.pid):
                    r.mm = f.mm
                    break
            else:
                found.append(r)
