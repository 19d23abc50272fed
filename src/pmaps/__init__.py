"""pmaps: a Linux process's memory, page by page.

    >>> import pmaps
    >>> snap = pmaps.collect(pid)                      # one process, page by page
    >>> snap.pages.vpn, snap.pages.pfn, snap.pages.kflags, snap.pages.kcount
    >>> pmaps.footprint(snap.pages, snap.known)["pss"]  # smaps' rules
    >>> scan = pmaps.scan_system()                      # every process, one kpage pass
    >>> pmaps.save(snap, "x.npz"); pmaps.load("x.npz")
    >>> pmaps.diff(sample_a, sample_b)                  # page-exact changes
    >>> pmaps.wss(pid, interval=1.0)                    # working set

The names are imported on first use: `import pmaps` costs nothing until then. docs/api.md
describes each.
"""
from __future__ import annotations

from .lazy import lazy_names

# Not `from typing import ...`: typing costs 8 ms of every `pmaps` start-up, the window in which
# Ctrl-C would print a traceback (mypy knows a TYPE_CHECKING constant by its name).
TYPE_CHECKING = False

__version__ = "0.1.0"

# name -> (module, attribute): imported on first use (lazy.py)
_API: dict[str, tuple[str, str]] = {
    "collect": (".collector.process", "collect"),
    "Process": (".collector.process", "Process"),
    "Options": (".collector.options", "Options"),
    "scan_system": (".collector.system", "scan_system"),
    "take_sample": (".collector.sample", "take_sample"),
    "footprint": (".analysis.footprint", "footprint"),
    "diff": (".analysis.diff", "diff_samples"),
    "wss": (".analysis.wss", "measure"),
    "save": (".store.snapshot", "save"),
    "load": (".store.snapshot", "load"),
    "load_sample": (".store.recording", "load_sample"),
    "Snapshot": (".model", "Snapshot"),
    "Sample": (".model", "Sample"),
    "SystemScan": (".model", "SystemScan"),
    "PageSource": (".model", "PageSource"),
    "Pages": (".model", "Pages"),
    "Ranges": (".model", "Ranges"),
    "Known": (".model", "Known"),
    "Vma": (".model", "Vma"),
    "PmapsError": (".errors", "PmapsError"),
    "NoSuchProcess": (".errors", "NoSuchProcess"),
    "ProcessGone": (".errors", "ProcessGone"),
    "AccessDenied": (".errors", "AccessDenied"),
    "Unsupported": (".errors", "Unsupported"),
    "ZombieProcess": (".errors", "ZombieProcess"),
    "KernelThread": (".errors", "KernelThread"),
    "BadSnapshot": (".errors", "BadSnapshot"),
}
__all__ = [
    "AccessDenied",
    "BadSnapshot",
    "KernelThread",
    "Known",
    "NoSuchProcess",
    "Options",
    "PageSource",
    "Pages",
    "PmapsError",
    "Process",
    "ProcessGone",
    "Ranges",
    "Sample",
    "Snapshot",
    "SystemScan",
    "Unsupported",
    "Vma",
    "ZombieProcess",
    "__version__",
    "collect",
    "diff",
    "footprint",
    "load",
    "load_sample",
    "save",
    "scan_system",
    "take_sample",
    "wss",
]

if TYPE_CHECKING:
    from .analysis.diff import diff_samples as diff
    from .analysis.footprint import footprint
    from .analysis.wss import measure as wss
    from .collector.process import Options, Process, collect
    from .collector.sample import take_sample
    from .collector.system import scan_system
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
    from .model import Known, Pages, PageSource, Ranges, Sample, Snapshot, SystemScan, Vma
    from .store.recording import load_sample
    from .store.snapshot import load, save


__getattr__, __dir__ = lazy_names(__name__, _API)
