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

from . import procfs

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
