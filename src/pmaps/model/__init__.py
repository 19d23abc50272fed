"""Pure data every layer above shares: the state word, per-page columns, ranges, snapshots,
samples and whole-machine scans. Nothing here touches the OS.

Each name is imported on its first use (lazy.py, PEP 562): `pmaps PID` does not load the whole-machine scan's
and swap's modules (3-4 ms of its start-up)."""
from __future__ import annotations

from ..lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, {name: (mod, name) for name, mod in _HOME.items()})
