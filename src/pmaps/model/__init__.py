"""Pure data every layer above shares: the state word, per-page columns, ranges, snapshots,
samples and whole-machine scans. Nothing here touches the OS.

Each name is imported on its first use (PEP 562): `pmaps PID` does not load the whole-machine scan's
and swap's modules (3-4 ms of its start-up)."""
from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: mypy knows the constant by its name
if TYPE_CHECKING:
    from ..kernel.maps import PAGE_SHIFT, PAGE_SIZE, Vma
    from ..kernel.status import Ident
    from .pages import Pages
    from .ranges import Ranges, merge_boundary, merged_ranges, ranges_of
    from .sample import Sample
    from .snapshot import PageSource, Snapshot, inside_vmas
    from .state import Known, flag_string, state_names
    from .swap import SwapRefs
    from .system import Fixed, ProcRec, RollupRec, SystemScan

__all__ = [
           "PAGE_SHIFT",
           "PAGE_SIZE",
           "Fixed",
           "Ident",
           "Known",
           "PageSource",
           "Pages",
           "ProcRec",
           "Ranges",
           "RollupRec",
           "Sample",
           "Snapshot",
           "SwapRefs",
           "SystemScan",
           "Vma",
           "flag_string",
           "inside_vmas",
           "merge_boundary",
           "merged_ranges",
           "ranges_of",
           "state_names",
]

_HOME = {"PAGE_SHIFT": "..kernel.maps", "PAGE_SIZE": "..kernel.maps", "Vma": "..kernel.maps",
         "Ident": "..kernel.status", "Pages": ".pages", "Ranges": ".ranges", "merge_boundary": ".ranges",
         "merged_ranges": ".ranges", "ranges_of": ".ranges", "Sample": ".sample", "PageSource": ".snapshot",
         "Snapshot": ".snapshot", "inside_vmas": ".snapshot", "Known": ".state", "flag_string": ".state",
         "state_names": ".state", "SwapRefs": ".swap", "Fixed": ".system", "ProcRec": ".system",
         "RollupRec": ".system", "SystemScan": ".system"}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the lazy names too (tab completion)
