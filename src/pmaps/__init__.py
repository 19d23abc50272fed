"""pmaps: a Linux process's memory, page by page.

    >>> import pmaps
    >>> snap = pmaps.collect(pid)
    >>> snap.pages.vpn, snap.pages.pfn, snap.pages.kflags, snap.pages.kcount
"""
from __future__ import annotations

import os as _os

# pmaps uses no BLAS; OpenBLAS's default thread pool would spin up a thread per core at
# import and compete with the kernel reads for the CPUs.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

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
