"""SystemScan: many processes' pages in one set of columns (what top and libs read). Pure."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..kernel.maps import Vma
from ..kernel.status import Ident
from .pages import Pages
from .state import Known
from .swap import SwapRefs

SKIP_REASONS = ("exited", "denied", "missing")


@dataclass
class ProcRec:
    """One scanned process: who it is, its VMAs, and where its pages sit in the scan's columns."""

    ident: Ident
    vmas: list[Vma]
    lo: int  # first page index in SystemScan.pages
    hi: int
    vma_lo: np.ndarray  # per VMA: [lo, hi) page indexes in SystemScan.pages
    vma_hi: np.ndarray

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
