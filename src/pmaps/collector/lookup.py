"""A batch of pages' kpageflags and kpagecount, filled in place: what each page's pagemap entry
says decides what is read (kpagecount only where the page is not exclusively mapped or is
PMD-mapped, one kpageflags read per PMD-mapped THP, folio blocks for file pages), and pmaps' own
mappings are taken out of the counts (observer.py). Shared by collector.process and collector.system."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.idle import IdleBitmap
from ..kernel.kpage import KPF_ABI_MASK, PfnReader, kpf_mask
from ..kernel.pagemap import CAT_HUGE, CAT_UNKNOWN
from ..model import Pages
from .observer import Observer

U64 = np.uint64
THP_MASK = U64(511)  # PFNs of a PMD-sized folio: its head is aligned to 512


def pfns_visible(pages: Pages) -> bool:
    """False when present pages all read PFN 0: root whose CAP_SYS_ADMIN was dropped opens
    kpageflags yet reads PFN 0 from pagemap (pagemap.rst, since 4.2), and PFN 0's flags
    are not these pages'."""
    head = pages.pm[:4096]  # usually settled by the first present page: no pass over every page
    if ((head & pmb.PM_PFN_MASK)[pmb.present(head)] != 0).any():
        return True
    pres = pmb.present(pages.pm)
    return not pres.any() or bool((pages.pm[pres] & pmb.PM_PFN_MASK).any())


def lookup_pages(pages: Pages, reader: PfnReader, idle: IdleBitmap | None = None, split: bool = True,
                 observer: Observer | Callable[[], Observer | None] | None = None) -> None:
    """Fill pages.kflags and pages.kcount (and pages.idle) for the present pages, in place; with an
    observer, pmaps' own mappings are taken out of kpagecount (see observer.py). A callable observer
    is called once the counts are read (it may still be being read on another thread)."""
    pres = pmb.present(pages.pm)
    allp = bool(pres.all())
    pm = pages.pm if allp else pages.pm[pres]
    pfn = pm & pmb.PM_PFN_MASK
    # pagemap's "exclusively mapped" bit is set exactly when the page's mapcount is 1, the
    # same count kpagecount reports (fs/proc/task_mmu.c, 6.x: folio_precise_page_mapcount;
    # checked by tests/test_kernel_facts.py): read kpagecount only for the other pages.
    top = pmb.top_byte(pm)
    shared = (top & pmb.TOP_EXCLUSIVE) == 0
    # A PMD-mapped THP is one naturally aligned 512-page folio, and kpageflags' bits are the
    # folio's but for COMPOUND_HEAD/TAIL (fs/proc/page.c stable_page_flags): read the head's
    # flags once and derive the 511 tails' (checked against real reads by the tests).
    cat = pages.cat if allp else pages.cat[pres]
    huge = (cat & CAT_HUGE) != 0
    # But not its map counts: bit 56 of a PMD-mapped page is its head page's (pagemap_pmd_range_thp,
    # 6.x), while another process may map any of its pages by a pte (a forked child that split its
    # PMD and dropped or copied the head): read every page's count.
    shared |= huge
    tails: np.ndarray | None = None
    if huge.any():  # the rest is asked only where a PMD maps something
        tails = huge & ((cat & CAT_UNKNOWN) == 0) & ((pfn & THP_MASK) != 0)
    if tails is not None and not tails.any():
        tails = None
    flag_pfn = pfn if tails is None else np.where(tails, pfn & ~THP_MASK, pfn)
    # File pages (page cache, shmem) come in large folios too: their flags may be read a folio
    # block at a time (kpage.FOLIO_BLOCK). Anonymous pages are left out: without mTHP (the default)
    # a probe would only add a read.
    file = (top & pmb.TOP_FILE) != 0
    if tails is not None:
        file &= ~tails
    flags, count = reader.lookup(pfn, shared, split=split, flag_pfns=flag_pfn,
                                 folio_pfns=flag_pfn[file] if file.any() else None)
    if flags is not None and tails is not None:
        # Only the ABI bits carry over: kernel-internal ones (32+) may be per page.
        flags[tails] = (flags[tails] & KPF_ABI_MASK & ~kpf_mask("compound_head")) | kpf_mask("compound_tail")
    if idle is not None:
        # Y: the pte young bit, exported only through idle page tracking: a page not idle is young
        # (Documentation/admin-guide/mm/idle_page_tracking.rst).
        pages.idle = np.zeros(len(pages), dtype=bool)
        pages.idle[pres] = idle.read_idle(pfn)
    if count is not None:
        kc = np.ones(len(pfn), dtype=U64)
        # pmaps' own mappings only ever touch pages that are not exclusively the target's: the
        # subtraction looks at those alone (a THP-heavy target has almost none).
        obs = observer() if callable(observer) else observer
        kc[shared] = count if obs is None else obs.subtract(pfn[shared], count)
        count = kc
    if allp:
        pages.kflags, pages.kcount = flags, count
        return
    if flags is not None:
        pages.kflags = np.zeros(len(pages), dtype=U64)
        pages.kflags[pres] = flags
    if count is not None:
        pages.kcount = np.zeros(len(pages), dtype=U64)
        pages.kcount[pres] = count
