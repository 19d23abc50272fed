"""/proc/PID/clear_refs (Documentation/filesystems/proc.rst).

Writing 1 clears, for every page mapped by the process, the pte young bit, the folio's young
(idle-tracking) flag and PG_referenced (fs/proc/task_mmu.c clear_refs_pte_range, 6.x); 2 anon
pages only, 3 file pages only, 4 soft-dirty bits, 5 the peak RSS (VmHWM).

Only 4 flushes the TLBs (clear_refs_write: flush_tlb_mm for CLEAR_REFS_SOFT_DIRTY), and x86 clears
young bits without a flush on purpose (arch/x86/mm/pgtable.c, ptep_clear_flush_young): a CPU that
still holds a page's translation accesses it without setting the young bit again. With PCID a
context switch keeps translations too, so a page used just before 1 was written can be used during
the interval unseen (measured on 6.18: 1 to 18 of 20 pages written by memset missing from smaps'
Referenced, none once the writer had swept 32 MiB elsewhere in between).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from . import procfs
from .pagemap_scan import CAT_PRESENT, SCAN_MAX_PAGES, TASK_SIZE_MAX, Scanner

CLEAR_REFERENCED = 1


def clear_refs(pid: int, what: int = CLEAR_REFERENCED) -> None:
    """Write `what` to /proc/PID/clear_refs (needs ptrace access: the owner or root)."""
    path = procfs.proc_path(pid, "clear_refs")
    with procfs.translate(pid, path, started=True):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"%d\n" % what)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Cleared:
    """The start of a clear_refs interval (scan_and_clear)."""

    mark: tuple[int, int] | None  # procfs.mm_mark of the process read and cleared, read before both
    regions: bytes  # PAGEMAP_SCAN's regions (u64 start, end, categories) of its present pages, just before
    at: float  # time.monotonic() when clear_refs returned: the interval began then
    cpu: float  # this thread's CPU seconds for both


def scan_and_clear(pid: int) -> Cleared:
    """Which pages are present (PAGEMAP_SCAN over the whole address space, paced), then clear_refs 1:
    the start of wss's first interval. Without numpy: wss runs it on a thread while numpy and the
    analysis are imported (65,000 VMAs: scan 22 ms and clear_refs 25 ms of the kernel's time)."""
    t = time.thread_time()
    mark = procfs.mm_mark(pid)
    fd = procfs.open_pagemap(pid)
    try:
        raw = Scanner(fd, pid, returns=CAT_PRESENT, max_pages=SCAN_MAX_PAGES).regions_raw(0, TASK_SIZE_MAX)
    finally:
        os.close(fd)
    clear_refs(pid, CLEAR_REFERENCED)
    return Cleared(mark, raw, time.monotonic(), time.thread_time() - t)
