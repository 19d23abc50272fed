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
