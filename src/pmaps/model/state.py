"""The state word: one u64 per page (or range) holding every bit pmaps groups and reports by,
and the letters and names that show it. Pure.

    bits 0-26   kpageflags (ABI bits, include/uapi/linux/kernel-page-flags.h)
    bits 32-38  pagemap bits, in pagemap.PM_BITS order (present, swapped, file, exclusive,
                soft_dirty, uffd_wp, guard)
    bit  31     mapped by a PMD (PAGEMAP_SCAN's PAGE_IS_HUGE: a PMD-mapped THP or hugetlb)
    bit  39     young (not idle, from idle page tracking)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF, KPF_ABI_MASK, KPF_BITS

U64 = np.uint64
PM_SHIFT = 32
S_PRESENT = PM_SHIFT + 0
S_SWAPPED = PM_SHIFT + 1
S_FILE = PM_SHIFT + 2
S_EXCLUSIVE = PM_SHIFT + 3
S_SOFT_DIRTY = PM_SHIFT + 4
S_UFFD_WP = PM_SHIFT + 5
S_GUARD = PM_SHIFT + 6
S_YOUNG = 39
S_PMD = 31  # a pmaps bit between kpageflags (0-26) and pagemap (32-38): smaps' AnonHugePages needs it
PM_STATE_MASK = U64(((1 << len(pmb.PM_BITS)) - 1) << PM_SHIFT)
# The RFC's letters Y R A U P D W and the state bits they come from (see `pmaps --legend`: Y is the
# pte young bit via idle page tracking, P the nearest exported pte-dirty signal, soft-dirty).
RFC_LETTERS = "YRAUPDW"
RFC_BITS = (S_YOUNG, KPF["referenced"], KPF["active"], KPF["uptodate"], S_SOFT_DIRTY,
            KPF["dirty"], KPF["writeback"])
MC_KEY_MAX = (1 << 24) - 1  # -1 (unknown) wraps to the max: fine, it only has to differ
RFC_MASK = U64(sum(1 << b for b in RFC_BITS) | (1 << S_SWAPPED))
NAMES: dict[int, str] = {b: n for b, n, _ in KPF_BITS} | {
    PM_SHIFT + i: name for i, (_, name, _) in enumerate(pmb.PM_BITS)
}
LETTERS: dict[int, str] = {b: ch for b, _, ch in KPF_BITS} | {
    PM_SHIFT + i: ch for i, (_, _, ch) in enumerate(pmb.PM_BITS)
}
FULL_BITS = [b for b, _, _ in KPF_BITS] + [PM_SHIFT + i for i in range(len(pmb.PM_BITS))]
# pagemap bits 55-63 (entry >> 55) -> their state bits, one table lookup per page.
_PM_LOW = 55
_TOP_LUT = np.array(  # the same from bits 56-63 alone (when soft-dirty does not exist)
    [sum(1 << (PM_SHIFT + i) for i, (b, _, _) in enumerate(pmb.PM_BITS) if b >= 56 and v >> (b - 56) & 1)
     for v in range(256)],
    dtype=U64,
)
_PM_LUT = np.array(
    [sum(1 << (PM_SHIFT + i) for i, (b, _, _) in enumerate(pmb.PM_BITS) if v >> (b - _PM_LOW) & 1) for v in range(512)],
    dtype=U64,
)


def sbit(state: np.ndarray, b: int) -> np.ndarray:
    """Bool column of state bit b (a kpageflags bit number or an S_* constant)."""
    return ((state >> U64(b)) & U64(1)).astype(bool)


@dataclass(frozen=True)
class Known:
    """Which facts the pages carry (privileges, kernel features and the scan path decide)."""

    pfn: bool = False  # real PFNs (CAP_SYS_ADMIN)
    flags: bool = False  # kpageflags
    count: bool = False  # kpagecount
    young: bool = False  # idle page tracking
    soft_dirty: bool = False  # CONFIG_MEM_SOFT_DIRTY
    categories: bool = False  # PAGEMAP_SCAN categories (zero page, PMD-mapped)

    @property
    def zero(self) -> bool:
        return self.flags or self.categories

    def mask(self) -> np.uint64:
        """State bits that are meaningful."""
        m = PM_STATE_MASK
        if not self.soft_dirty:
            m &= ~U64(1 << S_SOFT_DIRTY)
        if self.flags:
            m |= KPF_ABI_MASK
        elif self.categories:
            m |= U64(1 << KPF["zero_page"])
        if self.young:
            m |= U64(1 << S_YOUNG)
        if self.categories:
            m |= U64(1 << S_PMD)
        return U64(m)

    def to_dict(self) -> dict[str, bool]:
        return {k: getattr(self, k) for k in ("pfn", "flags", "count", "young", "soft_dirty", "categories")}


def flag_string(state: int, known_mask: int, *, full: bool, swapped: bool = False) -> str:
    """The FLAGS column: RFC letters (YRAUPDW), or every kpageflags letter ':' pagemap letters."""
    if not full:
        if swapped:
            return "swapped"
        return "".join(
            ch if state >> b & 1 else ("_" if known_mask >> b & 1 else "?") for ch, b in zip(RFC_LETTERS, RFC_BITS)
        )
    out = []
    for b in FULL_BITS:
        if b == PM_SHIFT:
            out.append(":")
        out.append(LETTERS[b] if state >> b & 1 else ("_" if known_mask >> b & 1 else "?"))
    return "".join(out)


def state_names(state: int) -> list[str]:
    """Long names of the set bits: KPF names in lower case, then the pagemap bits."""
    return [NAMES[b] for b in FULL_BITS if state >> b & 1]


