"""The one footprint engine: RSS / PSS / USS / swap / SwapPss / THP / KSM / hugetlb / dirty of any
pages or ranges, computed the way fs/proc/task_mmu.c (smaps, smaps_rollup) does. Pure numpy.

Every view that shows a footprint (`--summary`, `top`, `libs`, `watch`, the exporter) computes it
here, from the same rules (fs/proc/task_mmu.c smaps_account / smaps_pte_entry / smaps_hugetlb_range, 6.x):
- Rss: present pages except the zero page and huge zero page (vm_normal_page() is NULL for them)
  and except hugetlb pages (kpageflags HUGE), which smaps counts in Shared/Private_Hugetlb only.
  Without kpageflags, hugetlb cannot be told from THP and counts as resident.
- Pss: PAGE_SIZE << PSS_SHIFT divided by the page's mapcount (kpagecount, which uses the same
  folio_precise_page_mapcount()/folio_average_page_mapcount() as smaps on 6.x), in 12-bit fixed
  point, summed and shifted once, as smaps_account() does.
- USS (Private_Clean + Private_Dirty): pages mapped once (mapcount < 2); without kpagecount,
  pagemap's "exclusively mapped" bit (56) tells the same, but for PMD-mapped pages: theirs is
  their THP head page's (6.x), so USS and Shared are unknown where a PMD maps a page without it.
- Swap: swap ptes (not the pte markers and migration entries that also carry pagemap's bit 62:
  pagemap.not_swap). SwapPss: PAGE_SIZE << PSS_SHIFT divided by the swap entry's count
  (swp_swapcount). No interface exports that count; a caller that scanned every holder passes the
  number of swap ptes sharing each entry (analysis/system.py), else each entry counts once.
- AnonHugePages: anonymous pages mapped by a PMD (PAGEMAP_SCAN PAGE_IS_HUGE, or the layout test
  of Pages.pmd_mapped without it). KSM: kpageflags KSM.
- Shared/Private_Hugetlb: hugetlb pages with mapcount >= 2 / < 2 (folio_maybe_mapped_shared).
- Dirty: PG_dirty, or an anonymous page not in the swap cache (it has no clean copy anywhere, as
  reclaim sees it; the pte dirty bit itself is not exported).

The input is a state word per element (model/state.py) and a map count, with a weight when the
elements are ranges of pages (samples) rather than pages.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF
from ..kernel.pagemap import CAT_SHMEM_SWAP
from ..model import Known, Pages, PageSource, Sample, SwapRefs
from ..model.snapshot import vma_table
from ..model.state import S_EXCLUSIVE, S_FILE, S_PMD, S_PRESENT, S_SWAPPED, S_UFFD_WP, sbit
from ..numeric import PAGE_SIZE

PSS_SHIFT = 12
U64 = np.uint64
# Every figure, in bytes; pss and swap_pss are summed in fixed point (<< PSS_SHIFT).
FIGURES = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "anon_thp", "ksm", "shared_hugetlb",
           "private_hugetlb", "dirty", "referenced", "zero_page", "hugetlb", "thp")
FIXED = ("pss", "swap_pss")


@dataclass
class Facts:
    """What the rules read, one element per page or per range of pages."""

    state: np.ndarray  # u64 state word (unknown bits clear)
    mapcount: np.ndarray  # int64, -1 unknown
    known: Known
    weight: np.ndarray | None = None  # int64 pages per element; None: one page each
    pmd: np.ndarray | None = None  # bool: mapped by a PMD; None: not known
    swap_share: np.ndarray | None = None  # int64 swap ptes holding each element's swap entry
    shmem_swap: np.ndarray | None = None  # bool: swapped shmem found through its file (no pte)

    @classmethod
    def of_pages(cls, pages: Pages, known: Known, swap_share: np.ndarray | None = None,
                 pmd: np.ndarray | None = None) -> Facts:
        """pmd: PMD mappings when the caller knows them better (a scan's per-process layout test)."""
        shm = (pages.cat & CAT_SHMEM_SWAP) != 0
        return cls(pages.state(known), pages.mapcount(known), known, None,
                   pages.pmd_mapped(known) if pmd is None else pmd, swap_share, shm if shm.any() else None)

    @classmethod
    def of_sample(cls, s: Sample) -> Facts:
        """Ranges of a sample; PMD mappings are in the state word when PAGEMAP_SCAN read them."""
        pmd = sbit(s.state, S_PMD) if s.known.categories else None
        return cls(s.state, s.mapcount, s.known, s.count.astype(np.int64), pmd)


def _kbit(state: np.ndarray, name: str) -> np.ndarray:
    return sbit(state, KPF[name])


def dirty_mask(state: np.ndarray, known_flags: bool = True) -> np.ndarray:
    """PG_dirty, or anonymous and not a clean swap-cache copy (see the module doc). On state words."""
    anon = _kbit(state, "anon") if known_flags else ~sbit(state, S_FILE)
    return _kbit(state, "dirty") | (anon & _kbit(state, "swapbacked") & ~_kbit(state, "swapcache"))


@dataclass
class Figures:
    """Per-element contributions to each figure (pages, or fixed-point bytes for FIXED), and which
    figures these facts cannot tell."""

    cols: dict[str, np.ndarray]
    unknown: set[str] = field(default_factory=set)

    def total(self) -> dict[str, int]:
        """Raw sums (pages, or fixed point) over all elements."""
        return {k: int(v.sum(dtype=np.int64)) for k, v in self.cols.items()}

    def by_group(self, group: np.ndarray, n: int) -> dict[str, np.ndarray]:
        """Raw sums per group index (0..n-1) of each element."""
        return {k: np.bincount(group, weights=v, minlength=n).astype(np.int64) for k, v in self.cols.items()}

    def prefix(self, bounds: np.ndarray) -> Prefix:
        """Prefix sums readable at the given sorted, unique element indexes (which must include 0 and
        the number of elements): any [lo, hi) between two of them sums in O(1).

        Columns are summed per segment (np.add.reduceat), never into full-length int64 prefix
        arrays: 4 M pages x 10 figures would be 350 MB of temporaries."""
        starts = bounds[:-1]
        empty = bounds[1:] == starts
        sums: dict[str, np.ndarray] = {}
        for k, v in self.cols.items():
            if len(starts) and len(v):
                # reduceat gives v[start] for empty segments: zero those.
                seg = np.add.reduceat(v, starts, dtype=np.int64)
                seg[empty] = 0
            else:
                seg = np.zeros(len(starts), dtype=np.int64)
            sums[k] = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(seg, dtype=np.int64)))
        return Prefix(np.asarray(bounds, dtype=np.int64), sums)


@dataclass
class Prefix:
    """Prefix sums of each figure readable at some element indexes: sums[k][i] is the sum of
    elements [0, at[i]). Kept as arrays (between_many reads 65,000 VMAs' bounds with one binary
    search); the dict and lists that between() reads one at a time are made on its first call."""

    at: np.ndarray  # int64, sorted, unique
    sums: dict[str, np.ndarray]  # int64, one per `at`
    _pos: dict[int, int] | None = field(default=None, repr=False, compare=False)
    _lists: dict[str, list[int]] | None = field(default=None, repr=False, compare=False)

    def between(self, lo: int, hi: int) -> dict[str, int]:
        if self._pos is None or self._lists is None:
            self._pos = {x: i for i, x in enumerate(self.at.tolist())}
            self._lists = {k: s.tolist() for k, s in self.sums.items()}
        a, b = self._pos[lo], self._pos[hi]
        return {k: s[b] - s[a] for k, s in self._lists.items()}

    def between_many(self, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
        """between() of many [lo[i], hi[i]) at once, as int64 arrays (the sums are int64's)."""
        a, b = self._rows(lo), self._rows(hi)
        return {k: s[b] - s[a] for k, s in self.sums.items()}

    def _rows(self, x: np.ndarray) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.at, x), max(len(self.at) - 1, 0))
        if len(x) and not (len(self.at) and (self.at[i] == x).all()):
            raise KeyError("a bound the prefix sums were not made at")
        return i


def unknown_of(known: Known) -> set[str]:
    """The figures pages with these facts cannot tell, whatever the pages."""
    out = set()
    if not known.count:
        out |= {"pss", "ksm", "shared_hugetlb", "private_hugetlb"}
    if not known.flags:
        out |= {"ksm", "shared_hugetlb", "private_hugetlb", "dirty", "referenced", "hugetlb", "thp"}
    if not known.zero:
        out.add("zero_page")
    if not (known.categories or (known.flags and known.pfn)):
        out.add("anon_thp")
    return out


def figures(f: Facts, want: tuple[str, ...] = FIGURES) -> Figures:
    """Each element's contribution to the wanted figures."""
    s, known = f.state, f.known
    n = len(s)
    w = f.weight
    present = sbit(s, S_PRESENT)
    zero = _kbit(s, "zero_page")  # set from kpageflags or PAGEMAP_SCAN's PFNZERO, when known
    huge = present & _kbit(s, "huge") if known.flags else np.zeros(n, dtype=bool)
    res = present & ~zero & ~huge
    out = Figures({})
    counts = known.count and len(f.mapcount) == n
    mc = np.maximum(f.mapcount, 1) if counts else None
    single = (mc < 2) if mc is not None else sbit(s, S_EXCLUSIVE)
    anon = _kbit(s, "anon") if known.flags else ~sbit(s, S_FILE)

    def put(name: str, col: np.ndarray | None) -> None:
        if name not in want:
            return
        if col is None:
            out.unknown.add(name)
            col = np.zeros(n, dtype=bool)
        if w is not None:
            col = col * w
        out.cols[name] = col

    put("rss", res)
    put("pss", np.where(res, (PAGE_SIZE << PSS_SHIFT) // mc, 0) if mc is not None else None)
    # Without map counts, bit 56 of a PMD-mapped page is its THP's head page's (6.x
    # pagemap_pmd_range_thp), not its own, which smaps counts. Clear (the head is shared: a fork),
    # any page of the THP may be mapped once: USS and Shared are unknown. (Set, another process may
    # still map its other pages by ptes; only root's kpagecount tells: docs/footprints.md.)
    unsure = mc is None and f.pmd is not None and bool((res & f.pmd & ~single).any())
    put("uss", None if unsure else res & single)
    put("shared", None if unsure else res & ~single)
    swapped = sbit(s, S_SWAPPED)
    # Without root pagemap hides swap entries (frame 0): which ptes share one (SwapPss) is unknown,
    # and a uffd-wp marker reads as a swapped page under uffd-wp (pagemap.not_swap).
    hidden = not known.pfn and bool(swapped.any())
    put("swap", None if hidden and bool((swapped & sbit(s, S_UFFD_WP)).any()) else swapped)
    if "swap_pss" in want and hidden:
        put("swap_pss", None)
    elif "swap_pss" in want:
        share = np.ones(n, dtype=np.int64) if f.swap_share is None else np.maximum(f.swap_share, 1)
        # smaps adds SwapPss for swap ptes only; swapped shmem counts in Swap alone (shmem_swap_usage).
        pte = swapped if f.shmem_swap is None else swapped & ~f.shmem_swap
        put("swap_pss", np.where(pte, (PAGE_SIZE << PSS_SHIFT) // share, 0))
    put("anon_thp", res & anon & f.pmd if f.pmd is not None else None)
    flags_counts = known.flags and mc is not None
    put("ksm", res & _kbit(s, "ksm") if flags_counts else None)
    put("shared_hugetlb", huge & ~single if flags_counts else None)
    put("private_hugetlb", huge & single if flags_counts else None)
    put("dirty", res & dirty_mask(s) if known.flags else None)
    put("referenced", res & _kbit(s, "referenced") if known.flags else None)
    put("zero_page", present & zero if known.zero else None)
    put("hugetlb", huge if known.flags else None)
    put("thp", res & anon & _kbit(s, "thp") if known.flags else None)
    return out


def finish_columns(cols: dict[str, np.ndarray], unknown: set[str], keys: tuple[str, ...] = FIGURES
                   ) -> dict[str, np.ndarray | None]:
    """finish() for columns of raw sums: bytes per element, None for what is unknown."""
    return {k: None if k in unknown else
            (cols[k] >> PSS_SHIFT if k in FIXED else cols[k] * PAGE_SIZE) for k in keys}


def finish(raw: dict[str, int], unknown: set[str], keys: tuple[str, ...] = FIGURES) -> dict[str, int | None]:
    """Raw sums -> bytes (fixed point shifted once, as smaps does); None for what is unknown."""
    return {k: None if k in unknown else
            (raw.get(k, 0) >> PSS_SHIFT if k in FIXED else raw.get(k, 0) * PAGE_SIZE) for k in keys}


BATCH_PAGES = 1 << 16  # pages gathered before the engine runs: per-call overhead, amortised


def vma_sums(src: PageSource, keys: tuple[str, ...] = FIGURES, batch: int = BATCH_PAGES,
             swap_refs: Callable[[], SwapRefs | None] | None = None) -> tuple[list[dict[str, int]], set[str]]:
    """Raw sums per VMA of a page source (finish() them), and what is unknown (see vma_columns)."""
    cols, unknown = vma_columns(src, keys, batch, swap_refs)
    lists = [cols[k].tolist() for k in keys]
    return [dict(zip(keys, vals)) for vals in zip(*lists)], unknown


def vma_columns(src: PageSource, keys: tuple[str, ...] = FIGURES, batch: int = BATCH_PAGES,
                swap_refs: Callable[[], SwapRefs | None] | None = None, per_vma: bool = True
                ) -> tuple[dict[str, np.ndarray], set[str]]:
    """Raw sums per VMA of a page source, one int64 column per figure, and what is unknown. The
    source's batches span many VMAs (PageSource.groups), gathered up to about `batch` pages per
    engine call: a process of 65,000 small VMAs costs a few engine calls and no Python per VMA;
    memory stays bounded by the batch. `swap_refs` is called once, when the first swapped page is
    seen, for the swap entries' holders (SwapPss); without it each swap entry counts once. With
    per_vma=False the columns hold one element: the whole process's sums (no per-VMA bincount)."""
    n = len(vma_table(src)) if per_vma else 1
    acc = {k: np.zeros(n, dtype=np.int64) for k in keys}
    unknown: set[str] = set()
    pending: list[tuple[Pages, np.ndarray]] = []
    size = 0
    refs: list[SwapRefs | None] = []

    def flush() -> None:
        nonlocal pending, size
        if not pending:
            return
        pages = Pages.concat([p for p, _ in pending])
        group = np.concatenate([g for _, g in pending]) if len(pending) > 1 else pending[0][1]
        share = None
        if swap_refs is not None and pmb.swapped(pages.pm).any():
            if not refs:
                refs.append(swap_refs())
            share = refs[0].share(pages.pm) if refs[0] is not None else None
        figs = figures(Facts.of_pages(pages, src.known, share), keys)
        unknown.update(figs.unknown)
        # Pages come VMA by VMA: one sum per run of a VMA's pages (np.add.reduceat), ~20x cheaper
        # than a weighted bincount over every page; bincount where the order is not that.
        runs = None
        if per_vma and len(group) and bool((group[1:] >= group[:-1]).all()):
            runs = np.flatnonzero(np.diff(group, prepend=group[0] - 1))
            ids = group[runs]
        for k, col in figs.cols.items():
            if not per_vma:
                acc[k][0] += int(col.sum(dtype=np.int64))
            elif runs is not None:
                # (Integer-valued: exact in float64 for at most 2**53 / (4096 << 12) pages a batch.)
                acc[k][ids] += np.add.reduceat(col, runs).astype(np.int64)
            else:
                acc[k] += np.bincount(group, weights=col, minlength=n).astype(np.int64)
        pending, size = [], 0

    for pages, group in src.groups():
        pending.append((pages, group))
        size += len(pages)
        if size >= batch:
            flush()
    flush()
    # `known` may have lost facts mid-scan (PFNs hidden): what the last chunk could not tell is unknown.
    unknown |= unknown_of(src.known)
    return acc, unknown


def footprint(pages: Pages, known: Known, keys: tuple[str, ...] = FIGURES) -> dict[str, int | None]:
    """Byte figures of any set of pages (one VMA, a chunk, a whole snapshot)."""
    figs = figures(Facts.of_pages(pages, known), keys)
    return finish(figs.total(), figs.unknown, keys)
