"""Folio sizes: which pages of a process sit in order-0 pages, mTHP folios (8 KiB to 1 MiB), PMD-size
THPs, hugetlb, KSM or the zero page, and how much of each large folio the process leaves unmapped
(memory a partly mapped THP wastes). Pure numpy over kpageflags.

A large folio is a naturally aligned run of 2**order PFNs: a COMPOUND_HEAD page then TAIL pages
(include/uapi/linux/kernel-page-flags.h; fs/proc/page.c stable_page_flags). From the flags of the
whole aligned 2 MiB block around a page (read by the collector), the folio of every page is the
run from its head to the last tail. Folios larger than a PMD are hugetlb (kpageflags HUGE).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernel.kpage import KPF
from ..model import Known, Pages, Vma
from ..numeric import PAGE_SIZE, run_bounds

U64 = np.uint64
BLOCK = 512  # PFNs of a PMD-size block (x86-64): the largest THP, and the unit read around a page
HEAD, TAIL, HUGE = 1 << KPF["compound_head"], 1 << KPF["compound_tail"], 1 << KPF["huge"]
KSM, ZERO = 1 << KPF["ksm"], 1 << KPF["zero_page"]


def folio_of(pfn: np.ndarray, block_start: np.ndarray, block_flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(head PFN, size in pages) of the folio of each PFN, from the kpageflags of the aligned blocks
    (block_start sorted, block_flags shaped (nblocks, BLOCK)). Order-0 pages: (pfn, 1)."""
    flat = block_flags.reshape(-1)
    n = len(flat)
    head = (flat & U64(HEAD)) != 0
    tail = (flat & U64(TAIL)) != 0
    # A run starts at every PFN that is not a tail (a head, or an order-0 page) and at block starts.
    start = ~tail
    start[::BLOCK] = True
    first, length = run_bounds(start[1:]) if n else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    run_of = np.repeat(np.arange(len(first)), length)
    headpfn = pfn.astype(U64).copy()
    size = np.ones(len(pfn), dtype=np.int64)
    if not len(block_start):
        return headpfn, size
    # Position of each PFN in the flattened blocks; PFNs outside every block are order-0 pages.
    base_pfn = pfn >> U64(9) << U64(9)
    b = np.minimum(np.searchsorted(block_start, base_pfn), len(block_start) - 1)
    inb = np.flatnonzero(block_start[b] == base_pfn)
    b = b[inb]
    pos = b * BLOCK + (pfn[inb] & U64(BLOCK - 1)).astype(np.int64)
    r = run_of[pos]
    is_large = head[first[r]] & (length[r] > 1)
    big = inb[is_large]
    size[big] = length[r[is_large]]
    headpfn[big] = (block_start[b[is_large]].astype(np.int64) + (first[r[is_large]] - b[is_large] * BLOCK)).astype(U64)
    return headpfn, size


def blocks_from_pages(pages: Pages) -> tuple[np.ndarray, np.ndarray]:
    """Blocks as folio_of takes them, filled from these pages' own kpageflags only (a saved snapshot:
    the pages a process does not map are unknown, so a partly mapped folio looks smaller)."""
    kf = pages.kflags if pages.kflags is not None else np.zeros(len(pages), dtype=U64)
    pres = pages.present & ((kf & U64(HEAD | TAIL)) != 0)
    pfn = pages.pfn[pres]
    starts = np.unique(pfn >> U64(9)) << U64(9)
    blocks = np.zeros((len(starts), BLOCK), dtype=U64)
    if len(starts):
        b = np.searchsorted(starts, pfn >> U64(9) << U64(9))
        blocks[b, (pfn & U64(BLOCK - 1)).astype(np.int64)] = kf[pres]
    return starts, blocks


@dataclass
class FolioRow:
    """Bytes of one VMA (or the total) by what backs them."""

    by_size: dict[int, int] = field(default_factory=dict)  # folio size in bytes -> bytes mapped
    hugetlb: int = 0
    ksm: int = 0
    zero_page: int = 0
    partial_unmapped: int = 0  # bytes of large folios this process maps only partly, left unmapped
    partial_folios: int = 0

    def add(self, o: FolioRow) -> None:
        for k, v in o.by_size.items():
            self.by_size[k] = self.by_size.get(k, 0) + v
        self.hugetlb += o.hugetlb
        self.ksm += o.ksm
        self.zero_page += o.zero_page
        self.partial_unmapped += o.partial_unmapped
        self.partial_folios += o.partial_folios


def folio_rows(vmas: list[Vma], bounds: np.ndarray, pages: Pages, known: Known, head: np.ndarray,
               size: np.ndarray) -> list[FolioRow]:
    """One row per VMA from a snapshot's pages (bounds: Snapshot.bounds()) and per present page its
    folio (head, size) from folio_of (0 and 0 where not present)."""
    kf = pages.kflags if pages.kflags is not None else np.zeros(len(pages), dtype=U64)
    pres = pages.present
    zero = pres & ((kf & U64(ZERO)) != 0)
    huge = pres & ((kf & U64(HUGE)) != 0)
    ksm = pres & ((kf & U64(KSM)) != 0) & ~zero
    normal = pres & ~zero & ~huge & ~ksm
    # Large folios mapped only partly by this process: pages mapped per head, against the size.
    large = normal & (size > 1)
    _, first_idx, mapped = np.unique(head[large], return_index=True, return_counts=True)
    fsize = size[large][first_idx]
    unmapped = np.maximum(fsize - mapped, 0)
    owner_page = np.flatnonzero(large)[first_idx]  # the VMA of a folio's first mapped page owns its waste
    rows = []
    for lo, hi in bounds.tolist():
        row = FolioRow()
        sel = slice(lo, hi)
        sizes, counts = np.unique(size[sel][normal[sel]], return_counts=True)
        row.by_size = {int(s) * PAGE_SIZE: int(c) * PAGE_SIZE for s, c in zip(sizes.tolist(), counts.tolist())}
        row.hugetlb = int(huge[sel].sum()) * PAGE_SIZE
        row.ksm = int(ksm[sel].sum()) * PAGE_SIZE
        row.zero_page = int(zero[sel].sum()) * PAGE_SIZE
        own = (owner_page >= lo) & (owner_page < hi) & (unmapped > 0)
        row.partial_unmapped = int(unmapped[own].sum()) * PAGE_SIZE
        row.partial_folios = int(own.sum())
        rows.append(row)
    return rows
