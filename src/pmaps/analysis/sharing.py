"""Physical sharing between processes, by PFN. Pure: numpy over Snapshots.

Two processes share a page when the same PFN is mapped in both (pagemap, CAP_SYS_ADMIN). The zero
page (and huge zero page) is left out: every process maps it, it costs nothing (smaps leaves it out
of Rss too). Hugetlb pages count: they are memory. Sets are sorted unique PFN arrays; pairs use
np.intersect1d, per-VMA membership np.searchsorted: no Python loop per page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..kernel.maps import Vma
from ..model import Snapshot
from ..model.snapshot import vma_index
from ..numeric import PAGE_SIZE, unique_sorted


def mapped_pfns(snap: Snapshot) -> np.ndarray:
    """PFNs of the present pages, zero page excluded, in page (address) order."""
    p = snap.pages
    keep = p.present & ~p.zero(snap.known)
    return p.pfn[keep]


def member(sorted_set: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x[i] in sorted_set, vectorised."""
    if len(sorted_set) == 0 or len(x) == 0:
        return np.zeros(len(x), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[pos] == x


@dataclass
class VmaSharing:
    vma: Vma
    rss: int  # bytes mapped (zero page excluded)
    shared: int  # bytes whose page is also mapped by any of the other processes
    with_each: dict[int, int] = field(default_factory=dict)  # other pid -> bytes in common


@dataclass
class Sharing:
    pids: list[int]
    comms: list[str]
    rss: list[int]  # distinct mapped bytes per process
    pairs: list[tuple[int, int, int]]  # (pid a, pid b, bytes in common)
    vmas: list[VmaSharing]  # per VMA of the first process


def sharing(snaps: list[Snapshot]) -> Sharing:
    """Pairs of processes and the first one's VMAs, by pages physically in common."""
    # (unique_sorted, not np.unique: whose hash path was 13 ms per 133,000 PFNs here, and whose
    # first call imports numpy.ma)
    sets = [unique_sorted(mapped_pfns(s)) for s in snaps]
    pairs = [(snaps[a].pid, snaps[b].pid, len(np.intersect1d(sets[a], sets[b], assume_unique=True)) * PAGE_SIZE)
             for a, b in combinations(range(len(snaps)), 2)]
    first = snaps[0]
    others = sets[1:]
    union = unique_sorted(np.concatenate(others)) if others else np.zeros(0, dtype=np.uint64)
    # Every page of the first process at once, summed per VMA (bincount): no numpy call per VMA.
    pages, vma = vma_index(first.pages, first.table if first.table is not None else first.vmas)
    keep = pages.present & ~pages.zero(first.known)
    pfn, vma = pages.pfn[keep], vma[keep]
    n = len(first.vmas)
    rss = np.bincount(vma, minlength=n)
    shared = np.bincount(vma, weights=member(union, pfn), minlength=n).astype(np.int64)
    each = [np.bincount(vma, weights=member(o, pfn), minlength=n).astype(np.int64) for o in others]
    pids = [s.pid for s in snaps[1:]]
    # Rows of the VMAs with pages, their figures in bytes made a column at a time (a process of
    # 65,000 VMAs: one row each).
    at = np.flatnonzero(rss)
    vmas = first.vmas
    withs = [dict(zip(pids, vals)) for vals in zip(*((col[at] * PAGE_SIZE).tolist() for col in each))] \
        if each else [{} for _ in range(len(at))]
    rows = [VmaSharing(vmas[i], r, sh, w) for i, r, sh, w in
            zip(at.tolist(), (rss[at] * PAGE_SIZE).tolist(), (shared[at] * PAGE_SIZE).tolist(), withs)]
    return Sharing([s.pid for s in snaps], [s.comm for s in snaps], [len(x) * PAGE_SIZE for x in sets], pairs, rows)
