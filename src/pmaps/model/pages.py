"""Per-page numpy columns of a process's populated pages. Pure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF, KPF_ABI_MASK
from ..kernel.pagemap import CAT_HUGE, CAT_PFNZERO
from ..numeric import run_bounds
from .state import _PM_LOW, _PM_LUT, _TOP_LUT, S_PMD, S_SWAPPED, S_YOUNG, U64, Known


@dataclass
class Pages:
    """Columns for the populated (present or swapped) pages of a process, in address order."""

    vpn: np.ndarray  # virtual page number (address >> 12), u64
    pm: np.ndarray  # raw pagemap entry, u64 (holds the PFN: see pfn)
    cat: np.ndarray  # PAGEMAP_SCAN categories, u16; CAT_UNKNOWN from the fallback path
    kflags: np.ndarray | None = None  # kpageflags, u64 (0 for swapped pages)
    kcount: np.ndarray | None = None  # kpagecount, u64
    idle: np.ndarray | None = None  # idle bit, bool
    kcgroup: np.ndarray | None = None  # kpagecgroup: inode of the memory cgroup charged (0 none), u64

    def __len__(self) -> int:
        return len(self.vpn)

    @classmethod
    def empty(cls) -> Pages:
        z = np.zeros(0, dtype=U64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.uint16))

    def take(self, sel: slice | np.ndarray) -> Pages:
        def t(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[sel]

        return Pages(self.vpn[sel], self.pm[sel], self.cat[sel], t(self.kflags), t(self.kcount), t(self.idle),
                     t(self.kcgroup))

    @classmethod
    def concat(cls, parts: list[Pages]) -> Pages:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]

        def c(name: str) -> np.ndarray | None:
            cols = [getattr(p, name) for p in parts]
            return None if any(x is None for x in cols) else np.concatenate(cols)

        vpn, pm, cat = c("vpn"), c("pm"), c("cat")
        assert vpn is not None and pm is not None and cat is not None
        return cls(vpn, pm, cat, c("kflags"), c("kcount"), c("idle"), c("kcgroup"))

    @property
    def present(self) -> np.ndarray:
        return pmb.present(self.pm)

    @property
    def swapped(self) -> np.ndarray:
        return pmb.swapped(self.pm)

    @property
    def pfn(self) -> np.ndarray:
        return pmb.pfn(self.pm)

    def zero(self, known: Known) -> np.ndarray:
        """The shared zero page (or huge zero page) is mapped here."""
        if known.flags and self.kflags is not None:
            return (self.kflags >> U64(KPF["zero_page"]) & U64(1)).astype(bool)
        if known.categories:
            return (self.cat & CAT_PFNZERO) != 0
        return np.zeros(len(self), dtype=bool)

    def pmd_mapped(self, known: Known) -> np.ndarray | None:
        """Mapped by a PMD (THP or hugetlb): PAGEMAP_SCAN's PAGE_IS_HUGE; without it, THP pages that
        fill a 2 MiB-aligned virtual block with one naturally aligned, physically contiguous folio
        (how a PMD mapping looks; needs kpageflags and PFNs). None when neither can tell."""
        if known.categories:
            return (self.cat & CAT_HUGE) != 0
        if not (known.flags and known.pfn and self.kflags is not None):
            return None
        cand = self.present & (self.kflags >> U64(KPF["thp"]) & U64(1)).astype(bool)
        out = np.zeros(len(self), dtype=bool)
        idx = np.flatnonzero(cand)
        if len(idx) < 512:
            return out
        vpn, pfn = self.vpn[idx], self.pfn[idx]
        block = vpn >> U64(9)
        delta = pfn.astype(np.int64) - vpn.astype(np.int64)
        first, lens = run_bounds((block[1:] != block[:-1]) | (delta[1:] != delta[:-1]))
        full = (lens == 512) & (vpn[first] & U64(511) == 0) & (pfn[first] & U64(511) == 0)
        for f in first[full].tolist():  # once per 2 MiB block
            out[idx[f : f + 512]] = True
        return out

    def state(self, known: Known) -> np.ndarray:
        """The state word of every page (layout above), unknown bits cleared."""
        w = np.zeros(len(self), dtype=U64)
        if known.flags and self.kflags is not None:
            w |= self.kflags & KPF_ABI_MASK
        elif known.categories:
            w |= ((self.cat & CAT_PFNZERO) != 0).astype(U64) << U64(KPF["zero_page"])
        w |= _PM_LUT[self.pm >> U64(_PM_LOW)] if known.soft_dirty else _TOP_LUT[pmb.top_byte(self.pm)]
        if pmb.any_swapped_bit(self.pm):  # markers and migration entries carry bit 62 too: not swapped
            w[pmb.not_swap(self.pm)] &= ~U64(1 << S_SWAPPED)
        if known.categories:
            w |= ((self.cat & CAT_HUGE) != 0).astype(U64) << U64(S_PMD)
        if known.young and self.idle is not None:
            w |= (~self.idle & pmb.present(self.pm)).astype(U64) << U64(S_YOUNG)
        return w & known.mask()

    def mapcount(self, known: Known) -> np.ndarray:
        """kpagecount per page as int64; -1 where unknown, 0 for swapped pages."""
        if known.count and self.kcount is not None:
            return self.kcount.astype(np.int64)
        return np.where(pmb.present(self.pm), -1, 0).astype(np.int64)


