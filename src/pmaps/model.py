"""Per-page numpy columns, run-length ranges and the Snapshot: what every view is built from."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from .kernel import pagemap as pmb
from .kernel.kpage import KPF, KPF_ABI_MASK, KPF_BITS
from .kernel.maps import PAGE_SHIFT, PAGE_SIZE, Vma
from .kernel.scan import CAT_HUGE, CAT_PFNZERO

__all__ = ["Pages", "Known", "Ranges", "Snapshot", "Vma", "PAGE_SIZE"]

U64 = np.uint64
# The state word: one u64 per page that holds everything ranges are grouped by.
#   bits 0-26   kpageflags (ABI bits, kernel-page-flags.h)
#   bits 32-38  pagemap bits, in pagemap.PM_BITS order (present, swapped, file, exclusive,
#               soft_dirty, uffd_wp, guard)
#   bit  39     young (not idle, from idle page tracking)
PM_SHIFT = 32
S_PRESENT = PM_SHIFT + 0
S_SWAPPED = PM_SHIFT + 1
S_SOFT_DIRTY = PM_SHIFT + 4
S_YOUNG = 39
PM_STATE_MASK = U64(((1 << len(pmb.PM_BITS)) - 1) << PM_SHIFT)
# The RFC's letters Y R A U P D W and the state bits they come from (KERNEL.md).
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
        return U64(m)

    def to_dict(self) -> dict[str, bool]:
        return {k: getattr(self, k) for k in ("pfn", "flags", "count", "young", "soft_dirty", "categories")}


@dataclass
class Pages:
    """Columns for the populated (present or swapped) pages of a process, in address order."""

    vpn: np.ndarray  # virtual page number (address >> 12), u64
    pm: np.ndarray  # raw pagemap entry, u64 (holds the PFN: see pfn)
    cat: np.ndarray  # PAGEMAP_SCAN categories, u16; CAT_UNKNOWN from the fallback path
    kflags: np.ndarray | None = None  # kpageflags, u64 (0 for swapped pages)
    kcount: np.ndarray | None = None  # kpagecount, u64
    idle: np.ndarray | None = None  # idle bit, bool

    def __len__(self) -> int:
        return len(self.vpn)

    @classmethod
    def empty(cls) -> Pages:
        z = np.zeros(0, dtype=U64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.uint16))

    def take(self, sel: slice | np.ndarray) -> Pages:
        def t(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[sel]

        return Pages(self.vpn[sel], self.pm[sel], self.cat[sel], t(self.kflags), t(self.kcount), t(self.idle))

    @classmethod
    def concat(cls, parts: list[Pages]) -> Pages:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]

        def c(name: str) -> np.ndarray | None:
            cols = [getattr(p, name) for p in parts]
            return None if any(x is None for x in cols) else np.concatenate(cols)

        return cls(c("vpn"), c("pm"), c("cat"), c("kflags"), c("kcount"), c("idle"))  # type: ignore[arg-type]

    @property
    def addr(self) -> np.ndarray:
        return self.vpn << U64(PAGE_SHIFT)

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

    def pmd_mapped(self) -> np.ndarray:
        """Mapped by a PMD (THP or hugetlb), from PAGEMAP_SCAN."""
        return (self.cat & CAT_HUGE) != 0

    def state(self, known: Known) -> np.ndarray:
        """The state word of every page (layout above), unknown bits cleared."""
        w = np.zeros(len(self), dtype=U64)
        if known.flags and self.kflags is not None:
            w |= self.kflags & KPF_ABI_MASK
        elif known.categories:
            w |= ((self.cat & CAT_PFNZERO) != 0).astype(U64) << U64(KPF["zero_page"])
        w |= _PM_LUT[self.pm >> U64(_PM_LOW)] if known.soft_dirty else _TOP_LUT[pmb.top_byte(self.pm)]
        if known.young and self.idle is not None:
            w |= (~self.idle & pmb.present(self.pm)).astype(U64) << U64(S_YOUNG)
        return w & known.mask()

    def mapcount(self, known: Known) -> np.ndarray:
        """kpagecount per page as int64; -1 where unknown, 0 for swapped pages."""
        if known.count and self.kcount is not None:
            return self.kcount.astype(np.int64)
        return np.where(pmb.present(self.pm), -1, 0).astype(np.int64)


@dataclass
class Ranges:
    """Maximal runs of consecutive pages in one state: one row per range (columns)."""

    vpn: np.ndarray  # first virtual page
    count: np.ndarray
    state: np.ndarray  # state word (grouping mask applied)
    mapcount: np.ndarray  # -1 unknown
    pfn: np.ndarray | None  # first PFN, only when asked for

    def __len__(self) -> int:
        return len(self.vpn)

    @classmethod
    def concat(cls, parts: list[Ranges]) -> Ranges:
        def c(name: str) -> np.ndarray | None:
            cols = [getattr(p, name) for p in parts]
            return None if cols[0] is None else np.concatenate(cols)

        return cls(c("vpn"), c("count"), c("state"), c("mapcount"), c("pfn"))  # type: ignore[arg-type]


def ranges_of(pages: Pages, known: Known, *, full: bool, with_pfn: bool, swap: bool) -> Ranges:
    """Run-length encode pages (all in one VMA, address order) into maximal ranges.

    A range breaks where pages stop being virtually consecutive, where the grouped state or
    the map count changes, and, with PFNs, where pages stop being physically contiguous.
    """
    if not swap:
        pres = pmb.present(pages.pm)
        if not pres.all():
            pages = pages.take(pres)
    n = len(pages)
    state = pages.state(known)
    if not full:
        state &= RFC_MASK
    mc = pages.mapcount(known)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Ranges(pages.vpn, z, state, z, z.astype(U64) if with_pfn else None)
    # One compare for state and map count: the state word leaves bits 40-63 free.
    key = state | (np.minimum(mc.astype(U64), U64(MC_KEY_MAX)) << U64(40))
    brk = (pages.vpn[1:] != pages.vpn[:-1] + U64(1)) | (key[1:] != key[:-1])
    pfn = pages.pfn if with_pfn and known.pfn else None  # hidden PFNs read 0: no contiguity
    if pfn is not None:
        brk |= pfn[1:] != pfn[:-1] + U64(1)
    first = np.concatenate(([0], np.flatnonzero(brk) + 1))
    count = np.diff(np.concatenate((first, [n])))
    return Ranges(pages.vpn[first], count, state[first], mc[first], None if pfn is None else pfn[first])


def merge_boundary(a: Ranges, b: Ranges) -> tuple[Ranges, Ranges]:
    """Join a's last range with b's first when they are one range split by chunking."""
    if len(a) == 0 or len(b) == 0:
        return a, b
    la = len(a) - 1
    ok = (
        int(a.vpn[la]) + int(a.count[la]) == int(b.vpn[0])
        and a.state[la] == b.state[0]
        and a.mapcount[la] == b.mapcount[0]
        and (a.pfn is None or int(a.pfn[la]) + int(a.count[la]) == int(b.pfn[0]))  # type: ignore[index]
    )
    if not ok:
        return a, b
    a.count = a.count.copy()
    a.count[la] += b.count[0]
    sl = slice(1, None)
    return a, Ranges(b.vpn[sl], b.count[sl], b.state[sl], b.mapcount[sl], None if b.pfn is None else b.pfn[sl])


def merged_ranges(chunks: Iterable[Ranges]) -> Iterator[Ranges]:
    """Ranges of one VMA computed chunk by chunk, with chunk-boundary splits undone."""
    pending: Ranges | None = None
    for r in chunks:
        if pending is None:
            pending = r
            continue
        pending, r = merge_boundary(pending, r)
        if len(r) == 0:
            continue
        yield pending
        pending = r
    if pending is not None and len(pending):
        yield pending


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

    def bounds(self) -> np.ndarray:
        """[lo, hi) page-index slice of each VMA, shape (nvmas, 2)."""
        starts = np.array([v.start >> PAGE_SHIFT for v in self.vmas], dtype=U64)
        ends = np.array([v.end >> PAGE_SHIFT for v in self.vmas], dtype=U64)
        lo = np.searchsorted(self.pages.vpn, starts, side="left")
        hi = np.searchsorted(self.pages.vpn, ends, side="left")
        return np.stack([lo, hi], axis=1) if len(self.vmas) else np.zeros((0, 2), dtype=np.int64)

    def iter_vmas(self) -> Iterator[tuple[Vma, Pages]]:
        for vma, (lo, hi) in zip(self.vmas, self.bounds().tolist()):
            yield vma, self.pages.take(slice(lo, hi))

    def ranges(self, vma_index: int, *, full: bool = True, with_pfn: bool = False, swap: bool = True) -> Ranges:
        lo, hi = self.bounds()[vma_index].tolist()
        return ranges_of(self.pages.take(slice(lo, hi)), self.known, full=full, with_pfn=with_pfn, swap=swap)

    def without_pfns(self) -> Snapshot:
        """A copy whose pagemap entries no longer hold PFNs (for saving without --pfn)."""
        pm = self.pages.pm.copy()
        pm[pmb.present(pm)] &= ~pmb.PM_PFN_MASK
        return replace(self, pages=replace(self.pages, pm=pm), known=replace(self.known, pfn=False))
