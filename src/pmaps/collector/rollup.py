"""top's fast path: a process's figures from its own smaps_rollup, the kernel's footprint.

smaps_rollup already adds up every figure top shows by default (Rss, Pss, Private_*, Shared_*,
Swap, SwapPss, AnonHugePages, KSM, *_Hugetlb), so for those columns no page needs reading. Two
corrections keep the rows what the page-level path gives:
- The observer effect (observer.py): while pmaps runs, its own mappings of libc, ld.so and the
  interpreter raise the map count of pages it shares with the target. The target's VMAs of the
  files pmaps maps are found in its maps text (one regex pass) and read from its pagemap; of those
  pages, the ones pmaps maps too (a thousand or two per process) are kept as indexes of their PFNs
  among pmaps' own. Their figures depend on the PFN alone (kpageflags, map count), so the engine
  recomputes them once per PFN with and without pmaps, and each process adds the change of its
  pages (analysis/system.py). A process whose rollup shows nothing shared maps no page of pmaps'
  (such a page has a map count of 2 or more): its maps are not read.
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
from .observer import Observer

U64 = np.uint64


Observed = tuple[np.ndarray, np.ndarray]  # pagemap entries, and the index of each one's PFN in Observer.pfns


def read_rollup_pages(pid: int, observer: Observer | None) -> tuple[dict[str, int], Observed | None]:
    """smaps_rollup of pid, and its present pages that `observer` (pmaps) maps too, one element per
    page: their pagemap entries and their PFNs' indexes in observer.pfns (None: none). Only its
    VMAs of the files pmaps maps are read."""
    fields = read_rollup(pid)
    if observer is None or not len(observer):
        return fields, None
    # A page pmaps maps too has a map count of at least 2, which smaps counts as shared
    # (fs/proc/task_mmu.c smaps_account: mapcount >= 2, or a large folio mapped more than once):
    # with nothing shared there is nothing to take out, and maps need not be read.
    if not (fields.get("Shared_Clean", 0) or fields.get("Shared_Dirty", 0)):
        return fields, None
    spans = observer.file_ranges(procfs.read_file(pid, "maps", started=True))
    if not spans:
        return fields, None
    starts = np.array([a >> PAGE_SHIFT for a, _ in spans], dtype=U64)
    ends = np.array([b >> PAGE_SHIFT for _, b in spans], dtype=U64)
    fd = procfs.open_pagemap(pid)
    try:
        return fields, pmb.read_matching(fd, pid, starts, ends, observer.pfns)
    finally:
        procfs.close(fd)


def observed_pages(parts: list[Observed], observer: Observer) -> tuple[Pages, np.ndarray, np.ndarray]:
    """The observed pages of the rollup processes (read_rollup_pages, in the order of their records'
    [lo, hi)) as one page per PFN: the pages pmaps maps too are the same few thousand PFNs in every
    process, so their figures are computed once per PFN (a page's figures depend on its PFN's
    kpageflags and map count alone). Returns those pages (one each, PFN order), how often pmaps maps
    each, and for every observed page of the processes the index of its PFN among them."""
    if not parts:
        return Pages.empty(), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pm = np.concatenate([p for p, _ in parts])
    idx = np.concatenate([i for _, i in parts])
    rep = np.zeros(len(observer), dtype=U64)
    rep[idx] = pm  # any of a PFN's entries: present, and its file bit is the page's
    used = np.flatnonzero(np.bincount(idx, minlength=len(observer)))
    at = np.zeros(len(observer), dtype=np.int64)
    at[used] = np.arange(len(used))
    n = len(used)
    seen = Pages(np.zeros(n, dtype=U64), rep[used], np.full(n, CAT_UNKNOWN, dtype=np.uint16))
    return seen, observer.times[used], at[idx]


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
