"""RSS / PSS / USS / swap / THP of pages, computed the way fs/proc/task_mmu.c smaps does.

Accounting rules (see README "How the figures are computed"):
- The zero page and huge zero page are present in pagemap but not "normal" pages:
  smaps counts them in neither Rss nor Pss (vm_normal_page() returns NULL).
- PSS: each page adds PAGE_SIZE / mapcount in 12-bit fixed point (PSS_SHIFT), summed per VMA
  and shifted once, exactly as smaps_account(); mapcount is kpagecount, which uses the same
  folio_precise_page_mapcount()/folio_average_page_mapcount() as smaps on 6.x.
- USS (Private_Clean + Private_Dirty): pages with mapcount < 2; without kpagecount,
  pagemap's "exclusively mapped" bit (56) tells the same.
- AnonHugePages: anonymous pages mapped by a PMD (PAGEMAP_SCAN's PAGE_IS_HUGE category).
- SwapPss: the kernel divides by the swap entry's count, which user space cannot read
  (no interface); pmaps reports it equal to Swap, exact for unshared swap entries.
- hugetlb pages (kpageflags HUGE) are outside Rss/Pss/USS, as in smaps (smaps_hugetlb_range()
  adds them to Shared_Hugetlb / Private_Hugetlb by mapcount); without kpageflags they cannot
  be told from THP and count as resident.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF
from ..model import Known, Pages

PAGE = 4096
PSS_SHIFT = 12
U64 = np.uint64


def _kbit(kflags: np.ndarray, name: str) -> np.ndarray:
    return (kflags >> U64(KPF[name]) & U64(1)).astype(bool)


@dataclass
class Footprint:
    """Byte totals; None where these privileges or this kernel cannot tell."""

    rss: int = 0
    pss_fixed: int | None = 0  # PSS << PSS_SHIFT, summed before the final shift like the kernel
    uss: int | None = 0
    swap: int = 0
    anon_thp: int | None = 0
    dirty: int | None = 0
    referenced: int | None = 0
    zero: int | None = 0  # zero-page mappings (present, not counted in rss)
    hugetlb: int | None = 0  # hugetlb pages (present, not counted in rss)

    @property
    def pss(self) -> int | None:
        return None if self.pss_fixed is None else self.pss_fixed >> PSS_SHIFT

    @property
    def swap_pss(self) -> int:
        return self.swap

    @property
    def shared(self) -> int | None:
        return None if self.uss is None else self.rss - self.uss

    def __add__(self, other: Footprint) -> Footprint:
        vals = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            vals[f.name] = None if a is None or b is None else a + b
        return Footprint(**vals)

    def as_dict(self) -> dict[str, int | None]:
        return {
            "rss": self.rss, "pss": self.pss, "uss": self.uss, "shared": self.shared, "swap": self.swap,
            "swap_pss": self.swap_pss, "anon_thp": self.anon_thp, "dirty": self.dirty,
            "referenced": self.referenced, "zero_page": self.zero, "hugetlb": self.hugetlb,
        }


def _pmd_thp_fallback(pages: Pages, cand: np.ndarray) -> np.ndarray:
    """Without PAGEMAP_SCAN: THP pages filling a 2 MiB-aligned virtual block with one
    naturally aligned, physically contiguous folio (how a PMD mapping looks)."""
    out = np.zeros(len(pages), dtype=bool)
    idx = np.flatnonzero(cand)
    if len(idx) < 512:
        return out
    vpn, pfn = pages.vpn[idx], pages.pfn[idx]
    block = vpn >> U64(9)
    delta = pfn.astype(np.int64) - vpn.astype(np.int64)
    first = np.concatenate(([0], np.flatnonzero((block[1:] != block[:-1]) | (delta[1:] != delta[:-1])) + 1))
    lens = np.diff(np.concatenate((first, [len(idx)])))
    full = (lens == 512) & (vpn[first] & U64(511) == 0) & (pfn[first] & U64(511) == 0)
    for f in first[full].tolist():
        out[idx[f : f + 512]] = True
    return out


def footprint(pages: Pages, known: Known) -> Footprint:
    """Totals for any set of pages (one VMA, a chunk of it, or a whole process)."""
    present = pmb.present(pages.pm)
    zero = pages.zero(known)
    kf = pages.kflags if known.flags else None
    huge = present & _kbit(kf, "huge") if kf is not None else np.zeros(len(pages), dtype=bool)
    res = present & ~zero & ~huge
    fp = Footprint(rss=int(res.sum()) * PAGE, swap=int(pmb.swapped(pages.pm).sum()) * PAGE)
    fp.zero = int((present & zero).sum()) * PAGE if known.zero else None
    fp.hugetlb = int(huge.sum()) * PAGE if kf is not None else None
    if known.count and pages.kcount is not None:
        mc = np.maximum(pages.kcount[res].astype(np.int64), 1)
        fp.pss_fixed = int(((PAGE << PSS_SHIFT) // mc).sum())
        fp.uss = int((mc < 2).sum()) * PAGE
    else:
        fp.pss_fixed = None
        fp.uss = int((res & pmb.bit(pages.pm, pmb.PM_EXCLUSIVE)).sum()) * PAGE
    if kf is not None:
        anon = _kbit(kf, "anon")
        # Anonymous pages not in the swap cache have no clean copy anywhere: dirty, as
        # reclaim sees them (the pte dirty bit itself is not exported).
        dirty = _kbit(kf, "dirty") | (anon & _kbit(kf, "swapbacked") & ~_kbit(kf, "swapcache"))
        fp.dirty = int((res & dirty).sum()) * PAGE
        fp.referenced = int((res & _kbit(kf, "referenced")).sum()) * PAGE
    else:
        anon = ~pmb.bit(pages.pm, pmb.PM_FILE)
        fp.dirty = fp.referenced = None
    if known.categories:
        fp.anon_thp = int((res & anon & pages.pmd_mapped()).sum()) * PAGE
    elif kf is not None and known.pfn:
        fp.anon_thp = int(_pmd_thp_fallback(pages, res & anon & _kbit(kf, "thp")).sum()) * PAGE
    else:
        fp.anon_thp = None
    return fp
