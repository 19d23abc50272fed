"""Collectors: one process (`Process`, `collect`), many processes (`scan_system`), one sample
(`take_sample`). One PAGEMAP_SCAN path and one kpage lookup path serve all three.

Each name is imported on its first use (PEP 562): a command parses its arguments and starts its
first read (procfs.read_ahead) before numpy is imported, and `pmaps PID` skips the system scan's
readers (smaps_rollup, vmstat, kcmp: ~3 ms)."""
from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: mypy knows the constant by its name
if TYPE_CHECKING:
    from .lookup import lookup_pages
    from .options import FIELDS, Options
    from .parallel import ordered_map
    from .process import Process, collect
    from .sample import take_sample
    from .system import scan_system

__all__ = ["FIELDS", "Options", "Process", "collect", "lookup_pages", "ordered_map", "scan_system", "take_sample"]

_HOME = {"FIELDS": "options", "Options": "options", "Process": "process", "collect": "process",
         "lookup_pages": "lookup", "ordered_map": "parallel", "take_sample": "sample", "scan_system": "system"}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the lazy names too (tab completion)
