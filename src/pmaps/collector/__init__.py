"""Collectors: one process (`Process`, `collect`), many processes (`scan_system`), one sample
(`take_sample`). One PAGEMAP_SCAN path and one kpage lookup path serve all three."""
from .parallel import ordered_map
from .process import FIELDS, Options, Process, collect, lookup_pages
from .sample import take_sample
from .system import scan_system

__all__ = ["FIELDS", "Options", "Process", "collect", "lookup_pages", "ordered_map", "scan_system", "take_sample"]
