"""Working set: which pages were accessed in an interval, per VMA, and page ages over cycles. Pure.

Three readbacks feed it (docs/time.md says what each can and cannot see):
- idle page tracking: a page is accessed when it is no longer idle (page-exact for LRU pages;
  a THP by its head page);
- DAMON (one region per resident PFN): a page is accessed when its region's nr_accesses > 0;
  passed in as `idle` like the idle bitmap (page-exact for LRU pages; a large folio as a whole);
- clear_refs 1 then kpageflags/pagemap: a page is *located* as accessed when its REFERENCED
  flag is set again (accesses the kernel mediates: read()/write(), GUP, faults through
  folio_mark_accessed) or when it became present or was swapped in during the interval. A CPU
  access to a resident page only sets the pte young bit, which no per-page interface exports
  without idle tracking: smaps' per-VMA Referenced counts those exactly, so every VMA gets an
  exact count and the located subset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernel.kpage import KPF
from ..kernel.maps import Vma
from ..model import Pages

U64 = np.uint64


def _kbit(p: Pages, name: str) -> np.ndarray:
    if p.kflags is None:
        return np.zeros(len(p), dtype=bool)
    return ((p.kflags >> U64(KPF[name])) & U64(1)).astype(bool)


def located(before: Pages, after: Pages, *, idle: np.ndarray | None = None) -> np.ndarray:
    """Bool per page of `after`: accessed during the interval, as far as per-page signals tell.

    `idle` (per page of after, from the idle bitmap) replaces the REFERENCED test when given.
    """
    pres = after.present & ~_kbit(after, "zero_page")
    # Was the page resident at the start? (absent or swapped then => it was faulted in since)
    idx = np.searchsorted(before.vpn, after.vpn)
    idx_c = np.minimum(idx, max(len(before) - 1, 0))
    was = (idx < len(before)) & (before.vpn[idx_c] == after.vpn) if len(before) else np.zeros(len(after), bool)
    was_res = was & before.present[idx_c] if len(before) else was
    touched = ~idle if idle is not None else _kbit(after, "referenced")
    return pres & (touched | ~was_res)


def runs(vpn: np.ndarray, sel: np.ndarray, cuts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first vpn, pages) of the runs of consecutive selected vpns (vpn sorted), also cut where a
    vpn is in `cuts` (e.g. the first pages of VMAs). Pure, vectorised."""
    v = vpn[sel].astype(np.int64)
    if len(v) == 0:
        return v, v
    brk = np.diff(v) != 1
    if cuts is not None:
        brk |= np.isin(v[1:], np.asarray(cuts, dtype=np.int64))
    brk = np.flatnonzero(brk) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [len(v)]))
    return v[starts], ends - starts


@dataclass
class VmaWss:
    vma: Vma
    resident: int  # pages resident at the end of the interval
    located: int  # pages known accessed, page by page
    counted: int | None  # pages accessed per smaps Referenced (clear_refs method), None with idle tracking

    @property
    def accessed(self) -> int:
        return max(self.located, self.counted or 0)


def per_vma(vmas: list[Vma], bounds: np.ndarray, acc: np.ndarray, pres: np.ndarray,
            smaps_ref: dict[int, int] | None) -> list[VmaWss]:
    """Rows per VMA from per-page bools (bounds from Snapshot.bounds()); smaps_ref: start -> bytes."""
    ca = np.concatenate(([0], np.cumsum(acc)))
    cp = np.concatenate(([0], np.cumsum(pres)))
    out = []
    for v, (lo, hi) in zip(vmas, bounds.tolist()):
        counted = None if smaps_ref is None else smaps_ref.get(v.start, 0) // 4096
        out.append(VmaWss(v, int(cp[hi] - cp[lo]), int(ca[hi] - ca[lo]), counted))
    return out


@dataclass
class Ages:
    """Per page, the last cycle (0-based) it was seen accessed; -1 never."""

    vpn: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=U64))
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cycles: int = 0

    def update(self, vpn: np.ndarray, accessed: np.ndarray) -> None:
        """One more cycle: vpn = the resident pages now (sorted), accessed = their bools."""
        idx = np.searchsorted(self.vpn, vpn)
        idx_c = np.minimum(idx, max(len(self.vpn) - 1, 0))
        known = (idx < len(self.vpn)) & (self.vpn[idx_c] == vpn) if len(self.vpn) else np.zeros(len(vpn), bool)
        prev = np.where(known, self.last[idx_c] if len(self.vpn) else -1, -1)
        self.vpn = vpn.copy()
        self.last = np.where(accessed, self.cycles, prev).astype(np.int64)
        self.cycles += 1

    def histogram(self) -> list[tuple[str, int]]:
        """(age label, pages): age k = last accessed k intervals ago (1 = in the last one)."""
        age = np.where(self.last >= 0, self.cycles - self.last, 0)
        counts = np.bincount(age, minlength=self.cycles + 1)
        rows = [(str(k), int(counts[k])) for k in range(1, self.cycles + 1)]
        rows.append((f"never (>{self.cycles})", int(counts[0])))
        return rows
