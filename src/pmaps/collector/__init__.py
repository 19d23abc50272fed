"""Collectors: one process (`Process`, `collect`), many processes (`scan_system`), one sample
(`take_sample`). One PAGEMAP_SCAN path and one kpage lookup path serve all three."""
from __future__ import annotations

from .lookup import lookup_pages
from .parallel import ordered_map
from .process import FIELDS, Options, Process, collect
from .sample import take_sample

TYPE_CHECKING = False  # not typing's: mypy knows the constant by its name
if TYPE_CHECKING:
    from .system import scan_system

__all__ = ["FIELDS", "Options", "Process", "collect", "lookup_pages", "ordered_map", "scan_system", "take_sample"]


def __getattr__(name: str) -> object:
    # The system scan (and its readers: smaps_rollup, vmstat, kcmp) is imported on first use:
    # ~3 ms that `pmaps PID` does not need.
    if name == "scan_system":
        from .system import scan_system

        return scan_system
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
