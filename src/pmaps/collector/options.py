"""What a Process reads (Options) and the names of --fields: without numpy, for the commands' argument
parsers (the collector's package imports its modules on first use)."""
from __future__ import annotations

from dataclasses import dataclass

# Pages per batch. 32 Ki: a batch's columns are 256 KiB each, which glibc's malloc keeps reusing;
# at 128 Ki (1 MiB columns) it gave pages back and faulted them in again, 29,000 page faults per
# 8 GiB process instead of 11,000: 5% more CPU (watch, --summary and 65,000 VMAs no slower).
CHUNK_PAGES = 1 << 15
NO_SCAN_ENV = "PMAPS_NO_SCAN"
FIELDS = ("full", "flags", "pagemap")  # what a sample reads (--fields); pagemap skips kpageflags/kpagecount


@dataclass(frozen=True)
class Options:
    """What to read. Reading less is cheaper (a pagemap-only sample skips kpageflags)."""

    flags: bool = True  # kpageflags
    counts: bool = True  # kpagecount
    scan: bool | None = None  # None: PAGEMAP_SCAN when the kernel has it (and PMAPS_NO_SCAN unset)
    chunk_pages: int = CHUNK_PAGES
    include_self: bool = False  # keep pmaps' own mappings in map counts (the raw kernel view)
    cgroup: bool = False  # kpagecgroup: the memory cgroup each page is charged to
    file_vmas: bool = False  # only the VMAs with an inode or shared (collector.mapped): no maps lines
    maps: bool = True  # False: maps is not read by open(); the table is empty until refresh_table()

    @classmethod
    def fields(cls, name: str, scan: bool | None = None) -> Options:
        """Options for a --fields name: full (flags and counts), flags, pagemap."""
        if name not in FIELDS:
            raise ValueError(f"unknown fields {name!r}")
        return cls(flags=name in ("full", "flags"), counts=name == "full", scan=scan)
