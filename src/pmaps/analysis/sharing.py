"""Physical sharing between processes, by PFN. Pure: numpy over Snapshots.

Two processes share a page when the same PFN is mapped in both (pagemap, CAP_SYS_ADMIN). The zero
page (and huge zero page) is left out: every process maps it, it costs nothing (smaps leaves it out
of Rss too). Hugetlb pages count: they are memory. Sets are sorted unique PFN arrays; pairs use
np.intersect1d, per-VMA membership np.searchsorted: no Python loop per page.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations
from typing import NamedTuple

import numpy as np

from ..kernel.maps import Vma, VmaTable
from ..model import Known, Pages, Snapshot
from ..model.snapshot import vma_index
from ..numeric import PAGE_SIZE, unique_sorted


class Mapped(NamedTuple):
    """What sharing needs of a process: its pages with PFNs (and what tells the zero page:
    kpageflags or PAGEMAP_SCAN's categories) and its VMAs as a table (no Vma objects)."""

    pid: int
    comm: str
    pages: Pages
    known: Known
    table: VmaTable

    @classmethod
    def of(cls, snap: Snapshot) -> Mapped:
        return cls(snap.pid, snap.comm, snap.pages, snap.known,
                   snap.table if snap.table is not None else VmaTable.of_vmas(snap.vmas))


def mapped_pfns(snap: Snapshot | Mapped) -> np.ndarray:
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
    """Pairs of processes, and the first process's VMAs that map pages, as columns (one entry
    per such VMA: a process of 65,000 VMAs is a few arrays, not 65,000 objects; `vmas` makes the
    objects when asked)."""

    pids: list[int]
    comms: list[str]
    rss: list[int]  # distinct mapped bytes per process
    pairs: list[tuple[int, int, int]]  # (pid a, pid b, bytes in common)
    table: VmaTable  # the first process's VMAs with mapped pages, in address order
    vma_rss: np.ndarray  # int64 bytes mapped per VMA of `table` (zero page excluded)
    vma_shared: np.ndarray  # int64 bytes also mapped by any of the other processes
    vma_with: np.ndarray  # int64 (len(pids) - 1, len(table)): bytes in common with each other process

    def with_column(self, pid: int) -> np.ndarray:
        """The bytes in common with `pid` per VMA: its last column when named twice (as a dict
        keyed by pid keeps the last)."""
        return self.vma_with[len(self.pids) - 2 - self.pids[:0:-1].index(pid)]

    @cached_property
    def vmas(self) -> list[VmaSharing]:
        """Per VMA of the first process, as objects."""
        others = self.pids[1:]
        withs = zip(*(self.with_column(p).tolist() for p in others)) if others else ((),) * len(self.table)
        return [VmaSharing(v, r, s, dict(zip(others, w))) for v, r, s, w in
                zip(self.table.vmas, self.vma_rss.tolist(), self.vma_shared.tolist(), withs)]


def sharing(snaps: Sequence[Snapshot]) -> Sharing:
    """Pairs of processes and the first one's VMAs, by pages physically in common."""
    return sharing_of([Mapped.of(s) for s in snaps])


def sharing_of(snaps: Sequence[Mapped]) -> Sharing:
    """sharing() of processes read without Vma objects (pmaps shared)."""
    # (unique_sorted, not np.unique: whose hash path was 13 ms per 133,000 PFNs here, and whose
    # first call imports numpy.ma)
    sets = [unique_sorted(mapped_pfns(s)) for s in snaps]
    pairs = [(snaps[a].pid, snaps[b].pid, len(np.intersect1d(sets[a], sets[b], assume_unique=True)) * PAGE_SIZE)
             for a, b in combinations(range(len(snaps)), 2)]
    first = snaps[0]
    others = sets[1:]
    union = unique_sorted(np.concatenate(others)) if others else np.zeros(0, dtype=np.uint64)
    table = first.table
    # Every page of the first process at once, summed per VMA (bincount): no numpy call per VMA.
    pages, vma = vma_index(first.pages, table)
    keep = pages.present & ~pages.zero(first.known)
    pfn, vma = pages.pfn[keep], vma[keep]
    n = len(table)
    rss = np.bincount(vma, minlength=n)
    shared = np.bincount(vma, weights=member(union, pfn), minlength=n)
    each = [np.bincount(vma, weights=member(o, pfn), minlength=n) for o in others]
    # The VMAs with pages, their figures in bytes: a column each.
    at = np.flatnonzero(rss)
    page = np.int64(PAGE_SIZE)
    withs = np.array([c[at] for c in each], dtype=np.int64).reshape(len(each), len(at)) * page
    return Sharing([s.pid for s in snaps], [s.comm for s in snaps], [len(x) * PAGE_SIZE for x in sets], pairs,
                   table.take(at), rss[at].astype(np.int64) * page, shared[at].astype(np.int64) * page, withs)
