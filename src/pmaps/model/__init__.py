"""Pure data every layer above shares: the state word, per-page columns, ranges, snapshots,
samples and whole-machine scans. Nothing here touches the OS."""
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
