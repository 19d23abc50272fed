"""pmaps: a Linux process's memory, page by page.

    >>> import pmaps
    >>> snap = pmaps.collect(pid)
    >>> snap.pages.vpn, snap.pages.pfn, snap.pages.kflags, snap.pages.kcount
"""
from __future__ import annotations

from .collect import Options, Process, collect
from .errors import (
    AccessDenied,
    BadSnapshot,
    KernelThread,
    NoSuchProcess,
    PmapsError,
    ProcessGone,
    Unsupported,
    ZombieProcess,
)
from .model import Known, Pages, Ranges, Snapshot, Vma

__version__ = "0.1.0"
__all__ = [
    "collect", "Process", "Options", "Snapshot", "Pages", "Ranges", "Known", "Vma",
    "PmapsError", "NoSuchProcess", "ProcessGone", "AccessDenied", "Unsupported",
    "ZombieProcess", "KernelThread", "BadSnapshot", "__version__",
]
