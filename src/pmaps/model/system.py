"""SystemScan: many processes' pages in one set of columns (what top and libs read). Pure."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from ..kernel.maps import Vma, VmaTable
from ..kernel.status import Ident
from .pages import Pages
from .state import Known
from .swap import SwapRefs

SKIP_REASONS = ("exited", "denied", "missing")


@dataclass(eq=False)
class Fixed:
    """Pages of one process left out of SystemScan.pages: a scan cache (collector.scan_cache.ScanCache)
    knows their pagemap entries and kpageflags to be those it read before, each mapped once
    (kpagecount 1). Whoever sums them keeps its sums in `memo`: they hold as long as this object,
    which the cache replaces when those pages change."""

    source: Pages  # the pages kept, with kflags
    which: np.ndarray  # bool per source page: this is one of them
    memo: dict[object, object] = field(default_factory=dict)
    n: int = -1  # how many (counted when not given)

    def __post_init__(self) -> None:
        if self.n < 0:
            self.n = int(np.count_nonzero(self.which))

    def __len__(self) -> int:
        return self.n

    def pages(self) -> Pages:
        """Those pages (a copy), with their map count of 1."""
        p = self.source.take(self.which)
        p.kcount = np.ones(len(p), dtype=np.uint64)
        return p


def page_slices(table: VmaTable, vpn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi) index in the sorted page numbers `vpn` of each VMA's pages (int64 columns)."""
    lo = np.searchsorted(vpn, table.start_page, side="left").astype(np.int64)
    hi = np.searchsorted(vpn, table.end_page, side="left").astype(np.int64)
    return lo, hi


@dataclass
class ProcRec:
    """One scanned process: who it is, its VMAs, and where its pages sit in the scan's columns.

    The VMAs are kept as columns (`table`, as the maps read decoded them; a list of `Vma` given is
    made a VmaTable): a process of 65,000 VMAs is scanned and summed without a Python object per
    VMA, and `vmas` makes them only when asked for."""

    ident: Ident
    table: VmaTable  # its VMAs; a list[Vma] given here is made a VmaTable
    lo: int  # first page index in SystemScan.pages
    hi: int
    vma_lo: np.ndarray  # per VMA: [lo, hi) page indexes in SystemScan.pages
    vma_hi: np.ndarray
    # Its pages that are not in SystemScan.pages (a scan cache's unchanged ones): they count in its
    # process figures (analysis.system.ScanFigures.process), not in any VMA's.
    fixed: Fixed | None = None

    if TYPE_CHECKING:  # the generated __init__ also takes the VMAs as a list (made a VmaTable)
        def __init__(self, ident: Ident, table: VmaTable | list[Vma], lo: int, hi: int, vma_lo: np.ndarray,
                     vma_hi: np.ndarray, fixed: Fixed | None = None) -> None: ...

    def __post_init__(self) -> None:
        self.table = VmaTable.of(self.table)

    @property
    def vmas(self) -> list[Vma]:
        """Its VMAs as Vma objects (made on first use, then kept by the table)."""
        return self.table.vmas

    @property
    def npages(self) -> int:
        """All its pages, the fixed ones included."""
        return self.hi - self.lo + (len(self.fixed) if self.fixed is not None else 0)

    @property
    def pid(self) -> int:
        return self.ident.pid


@dataclass
class RollupRec:
    """A process whose figures come from its own smaps_rollup (top's fast path), not from its pages."""

    ident: Ident
    fields: dict[str, int]  # smaps_rollup, in bytes
    mm: int  # pid of the first process of the scan sharing this mm (itself when alone)
    lo: int = 0  # its pages that pmaps maps too: [lo, hi) in SystemScan.observed_at
    hi: int = 0
    # A process too big for smaps_rollup's stall: read page by page, its pages reduced to the
    # footprint engine's raw sums as they stream (fields is then empty).
    sums: dict[str, int] | None = None
    span: tuple[int, int] = (0, 0)  # first VMA start, last VMA end: one mm prints one span

    @property
    def pid(self) -> int:
        return self.ident.pid


@dataclass
class SystemScan:
    """Every scanned process's pages in one set of columns, with kpageflags/kpagecount filled in."""

    procs: list[ProcRec]
    pages: Pages
    known: Known
    skipped: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in SKIP_REASONS})
    meminfo: dict[str, int] = field(default_factory=dict)
    self_pss: int = 0  # PSS of the scanning process itself (left out of the scan), per its smaps_rollup
    complete: bool = True  # every process on the machine was asked for (no filter)
    time: float = field(default_factory=time.time)
    # Swap ptes per swap entry over every process, when the scan is a selection with swapped pages
    # (SwapPss must count holders outside the selection too); None: count within the scan.
    swap_refs: SwapRefs | None = None
    # top's fast path: processes read from smaps_rollup; the PFNs of their pages that pmaps maps too,
    # one page each (kcount as the kernel counts them, pmaps included), with how often pmaps maps
    # each (observed_mine); and for each such page of each rollup process (RollupRec's [lo, hi)) the
    # index of its PFN in `observed` (observed_at). So the observer effect comes out of their figures
    # exactly as it does for page-level ones.
    rollups: list[RollupRec] = field(default_factory=list)
    observed: Pages | None = None
    observed_mine: np.ndarray | None = None
    observed_at: np.ndarray | None = None
    # kpagecgroup's inodes -> memory cgroup paths when pages.kcgroup was read (collector.charges),
    # kept with it in a saved scan so that a loaded one can still be grouped by charge.
    memcgs: dict[int, str] | None = None

    def with_fixed(self) -> SystemScan:
        """This scan with every process's fixed pages (ProcRec.fixed) back among its pages, in
        address order: what a scan without a cache reads (a copy; self when nothing is fixed)."""
        if all(p.fixed is None for p in self.procs):
            return self
        parts: list[Pages] = []
        procs: list[ProcRec] = []
        pos = 0
        for p in self.procs:
            part = self.pages.take(slice(p.lo, p.hi))
            if p.fixed is not None:
                both = Pages.concat([part, p.fixed.pages()])
                part = both.take(np.argsort(both.vpn, kind="stable"))
            lo, hi = page_slices(p.table, part.vpn)
            lo, hi = lo + pos, hi + pos
            procs.append(replace(p, lo=pos, hi=pos + len(part), vma_lo=lo, vma_hi=hi, fixed=None))
            parts.append(part)
            pos += len(part)
        return replace(self, procs=procs, pages=Pages.concat(parts))
