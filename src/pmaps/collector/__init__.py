"""Collectors: one process (`Process`, `collect`), many processes (`scan_system`), one sample
(`take_sample`). One PAGEMAP_SCAN path and one kpage lookup path serve all three.

Each name is imported on its first use (lazy.py, PEP 562): a command parses its arguments and starts its
first read (procfs.read_ahead) before numpy is imported, and `pmaps PID` skips the system scan's
readers (smaps_rollup, vmstat, kcmp: ~3 ms)."""
from __future__ import annotations

from ..lazy import lazy_names

TYPE_CHECKING = False  # not typing's: mypy knows the constant by its name
if TYPE_CHECKING:
    from .lookup import lookup_pages
    from .options import FIELDS, Options
    from .parallel import ordered_map
    from .process import Process, collect
    from .sample import take_sample
    from .system import scan_system

__all__ = ["FIELDS", "Options", "Process", "collect", "lookup_pages", "ordered_map", "scan_system", "take_sample"]

_HOME = {"FIELDS": ".options", "Options": ".options", "Process": ".process", "collect": ".process",
         "lookup_pages": ".lookup", "ordered_map": ".parallel", "take_sample": ".sample", "scan_system": ".system"}
__getattr__, __dir__ = lazy_names(__name__, {name: (mod, name) for name, mod in _HOME.items()})
