"""Swap entry reference counts: what smaps divides Swap by to get SwapPss. Pure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb


@dataclass(frozen=True)
class SwapRefs:
    """Swap ptes per swap entry (type and offset, pagemap bits 0-54) over every process read."""

    entries: np.ndarray  # sorted unique u64
    counts: np.ndarray  # int64
    processes: int = 0  # how many processes were read

    def share(self, pm: np.ndarray) -> np.ndarray:
        """Per pagemap entry: the number of swap ptes holding its swap entry (1 when unknown or not
        swapped): smaps_pte_entry's swp_swapcount() for a private swap entry (fs/proc/task_mmu.c)."""
        out = np.ones(len(pm), dtype=np.int64)
        sw = pmb.swapped(pm)
        if not sw.any() or not len(self.entries):
            return out
        e = pm[sw] & pmb.PM_PFN_MASK
        pos = np.minimum(np.searchsorted(self.entries, e), len(self.entries) - 1)
        hit = self.entries[pos] == e
        out[np.flatnonzero(sw)[hit]] = self.counts[pos[hit]]
        return out
