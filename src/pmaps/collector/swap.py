"""Every process's swap ptes, counted per swap entry: SwapPss of any selection of processes.

smaps divides each swap pte's page by swp_swapcount(), the number of references to the swap entry
(fs/proc/task_mmu.c smaps_pte_entry); no interface exports that count, but every reference to a
private anonymous swap entry is a swap pte in some page table. PAGEMAP_SCAN with
category_anyof_mask = PAGE_IS_SWAPPED finds those ptes without reading any present page, so this
costs one page-table walk per process, and only when a target has swapped pages at all.
Limits (docs/footprints.md): processes sharing one mm (CLONE_VM) count twice; swapped shmem is
referenced from its file, not from ptes.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import PmapsError
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.maps import read_table
from ..kernel.pagemap import CAT_SWAPPED, Scanner
from ..model.swap import SwapRefs
from ..numeric import PAGE_SHIFT

U64 = np.uint64


def process_swap_entries(pid: int) -> np.ndarray | None:
    """The swap entries (type and offset) of a process's swap ptes; None when it cannot be read."""
    try:
        fd = procfs.open_pagemap(pid)
    except PmapsError:
        return None
    try:
        # Window by window over its VMAs: a scan for the few swapped pages walks every present one,
        # and one call over the whole space held the mmap_lock for the whole walk (23 ms for 8 GiB).
        table = read_table(pid, started=True)
        ws, we = pmb.scan_windows(table.start >> U64(PAGE_SHIFT), table.end >> U64(PAGE_SHIFT))
        scanner = Scanner(fd, pid, anyof=CAT_SWAPPED, returns=CAT_SWAPPED)
        parts = [scanner.regions(a << PAGE_SHIFT, b << PAGE_SHIFT) for a, b in zip(ws.tolist(), we.tolist())]
        regs = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=U64)
        if not len(regs):
            return np.zeros(0, dtype=U64)
        pm = pmb.read_runs(fd, pid, regs[:, 0] >> U64(PAGE_SHIFT), regs[:, 1] >> U64(PAGE_SHIFT))
        return pm[pmb.swapped(pm)] & pmb.PM_PFN_MASK
    except PmapsError:  # gone, a kernel thread, no PAGEMAP_SCAN
        return None
    finally:
        procfs.close(fd)


def machine_swap_refs() -> SwapRefs | None:
    """Swap ptes per swap entry over every readable process (pmaps itself included: it may have
    forked the targets); None when PAGEMAP_SCAN is missing (Linux < 6.7)."""
    me = os.getpid()
    parts = []
    n = 0
    for pid in procfs.list_pids():
        e = process_swap_entries(pid)
        if e is None:
            if pid == me:
                return None  # not even our own pagemap: no PAGEMAP_SCAN here
            continue
        n += 1
        parts.append(e)
    entries = np.concatenate(parts) if parts else np.zeros(0, dtype=U64)
    uniq, counts = np.unique(entries, return_counts=True)
    return SwapRefs(uniq, counts.astype(np.int64), n)
