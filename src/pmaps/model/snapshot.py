"""A process's VMAs and populated pages at one moment, and the PageSource protocol every view reads. Pure."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.maps import PAGE_SHIFT, Vma, VmaTable
from ..numeric import arange_runs
from .pages import Pages
from .ranges import Ranges, ranges_of
from .state import U64, Known


def inside_vmas(vpn: np.ndarray, vmas: list[Vma] | VmaTable) -> np.ndarray:
    """Which of the (sorted) pages lie inside one of the (sorted, disjoint) VMAs."""
    starts, ends = vma_bounds(vmas)
    i = np.searchsorted(starts, vpn, side="right") - 1
    if not len(vmas):
        return np.zeros(len(vpn), dtype=bool)
    return (i >= 0) & (vpn < ends[np.maximum(i, 0)])


class PageSource(Protocol):
    """What the page-range and footprint views read: a live `collector.Process` or a `Snapshot`.

    `known` may change while chunks are read (a live process may turn out to hide PFNs): read it
    after the chunks, or through a callable."""

    pid: int
    comm: str
    vmas: list[Vma]

    @property
    def known(self) -> Known: ...

    def chunks(self) -> Iterator[tuple[int, Pages]]:
        """(VMA index, Pages) in address order; a VMA may come in several chunks."""
        ...

    def groups(self) -> Iterator[tuple[Pages, np.ndarray]]:
        """The same pages in batches that span many VMAs: (Pages, VMA index of each page), in
        address order (a VMA may continue into the next batch). Cheaper than chunks() per VMA."""
        ...


GROUP_BATCH = 1 << 18  # pages per groups() batch of a snapshot


def vma_bounds(vmas: list[Vma] | VmaTable) -> tuple[np.ndarray, np.ndarray]:
    """First and end page of each VMA (u64 columns)."""
    if isinstance(vmas, VmaTable):
        return vmas.start_page, vmas.end_page
    starts = np.fromiter((v.start >> PAGE_SHIFT for v in vmas), dtype=U64, count=len(vmas))
    ends = np.fromiter((v.end >> PAGE_SHIFT for v in vmas), dtype=U64, count=len(vmas))
    return starts, ends


def vma_index(pages: Pages, vmas: list[Vma] | VmaTable, bounds: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[Pages, np.ndarray]:
    """(pages inside a VMA, the index of that VMA for each): a page outside every VMA (one that grew
    into a gap after maps was read) is dropped. Pages are sorted: a binary search per VMA the batch
    touches, not per page."""
    n = len(pages)
    if not n or not len(vmas):
        return pages.take(slice(0, 0)), np.zeros(0, dtype=np.int64)
    starts, ends = vma_bounds(vmas) if bounds is None else bounds
    a = int(np.searchsorted(ends, pages.vpn[0], side="right"))
    b = int(np.searchsorted(starts, pages.vpn[-1], side="right"))
    lo = np.searchsorted(pages.vpn, starts[a:b], side="left")
    hi = np.searchsorted(pages.vpn, ends[a:b], side="left")
    counts = (hi - lo).astype(np.int64)
    group = np.repeat(np.arange(a, b, dtype=np.int64), counts)
    if len(group) == n:
        return pages, group
    return pages.take(arange_runs(lo.astype(np.int64), counts)), group


def page_groups(pages: Pages, vmas: list[Vma] | VmaTable) -> Iterator[tuple[Pages, np.ndarray]]:
    """Sorted pages in batches of GROUP_BATCH, each with the index of every page's VMA (vma_index):
    a snapshot's PageSource groups."""
    bounds = vma_bounds(vmas)
    for lo in range(0, len(pages), GROUP_BATCH):
        yield vma_index(pages.take(slice(lo, lo + GROUP_BATCH)), vmas, bounds)


@dataclass
class Snapshot:
    """A process's VMAs and populated pages at one moment."""

    pid: int
    comm: str
    vmas: list[Vma]
    pages: Pages
    known: Known
    time: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)
    # The same VMAs as columns when they came from a live maps read (collector.Process.table):
    # writers take them from here instead of 65,000 Vma objects (store.snapshot's JSON).
    table: VmaTable | None = field(default=None, compare=False, repr=False)

    def columns(self) -> list[Vma] | VmaTable:
        """The VMAs as columns when known (no u64 column made from 65,000 objects), else the list."""
        return self.table if self.table is not None else self.vmas

    def bounds(self) -> np.ndarray:
        """[lo, hi) page-index slice of each VMA, shape (nvmas, 2)."""
        starts, ends = vma_bounds(self.columns())
        lo = np.searchsorted(self.pages.vpn, starts, side="left")
        hi = np.searchsorted(self.pages.vpn, ends, side="left")
        return np.stack([lo, hi], axis=1) if len(self.vmas) else np.zeros((0, 2), dtype=np.int64)

    def chunks(self) -> Iterator[tuple[int, Pages]]:
        """The PageSource stream: (VMA index, its pages), VMAs with no page left out."""
        for i, (lo, hi) in enumerate(self.bounds().tolist()):
            if hi > lo:
                yield i, self.pages.take(slice(lo, hi))

    def groups(self) -> Iterator[tuple[Pages, np.ndarray]]:
        """The PageSource batches: (Pages, VMA index per page), GROUP_BATCH pages at a time."""
        return page_groups(self.pages, self.columns())

    def iter_vmas(self) -> Iterator[tuple[Vma, Pages]]:
        for vma, (lo, hi) in zip(self.vmas, self.bounds().tolist()):
            yield vma, self.pages.take(slice(lo, hi))

    def ranges(self, vma_index: int, *, full: bool = True, with_pfn: bool = False, swap: bool = True) -> Ranges:
        lo, hi = self.bounds()[vma_index].tolist()
        return ranges_of(self.pages.take(slice(lo, hi)), self.known, full=full, with_pfn=with_pfn, swap=swap)

    def without_pfns(self) -> Snapshot:
        """A copy whose pagemap entries no longer hold PFNs (for saving without --pfn)."""
        pages, known = strip_pfns(self.pages, self.known)
        return replace(self, pages=pages, known=known)


def strip_pfns(pages: Pages, known: Known) -> tuple[Pages, Known]:
    """Pages whose pagemap entries no longer hold PFNs, and what is known then."""
    pm = pages.pm.copy()
    pm[pmb.present(pm)] &= ~pmb.PM_PFN_MASK
    return replace(pages, pm=pm), replace(known, pfn=False)


def vma_table(src: PageSource) -> VmaTable:
    """The source's VMAs as columns: a live process's own table (decoded from maps, with the lines as
    read), else made from its Vma list."""
    table = getattr(src, "table", None)
    return table if isinstance(table, VmaTable) else VmaTable.of_vmas(src.vmas)
