"""/proc/PID/clear_refs (Documentation/filesystems/proc.rst).

Writing 1 clears, for every page mapped by the process, the pte young bit, the folio's young
(idle-tracking) flag and PG_referenced (fs/proc/task_mmu.c clear_refs_pte_range, 6.x); 2 anon
pages only, 3 file pages only, 4 soft-dirty bits, 5 the peak RSS (VmHWM).
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
