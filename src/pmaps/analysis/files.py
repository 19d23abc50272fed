"""Page-cache residency of files: rows per file, totals, the top N, skipped paths by reason."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..kernel import pagecache as pc
from ..kernel.pagecache import PAGE_SIZE, FileStat, Skipped

if TYPE_CHECKING:  # numpy and the page model load only for --pages: the table starts faster
    import numpy as np

    from ..model import Known, Pages

COUNTS = ("resident", "dirty", "writeback", "evicted", "recently_evicted")


def file_row(f: FileStat, users: dict[tuple[int, int], set[int]] | None = None) -> dict[str, Any]:
    """One file as bytes (None for what mincore cannot tell); pct of its pages resident."""
    c = f.cache
    pages = (f.size + PAGE_SIZE - 1) // PAGE_SIZE
    row: dict[str, Any] = {"path": f.path, "size": f.size}
    for key, v in zip(COUNTS, (c.cache, c.dirty, c.writeback, c.evicted, c.recently_evicted)):
        row[key] = None if v is None else v * PAGE_SIZE
    # Pages past EOF cannot be cached, but a large folio is counted whole: cap at 100%.
    row["resident_pct"] = round(min(100.0, 100.0 * c.cache / pages), 1) if pages else None
    if users is not None:
        row["owners"] = sorted(users.get((f.dev, f.ino), ()))
    return row


@dataclass
class FilesReport:
    """What `pmaps files` found: rows (all, or the top N by resident bytes), totals over every
    file counted, and the paths skipped, by reason."""

    rows: list[dict[str, Any]]
    total: dict[str, Any]
    nfiles: int
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def nskipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def summarize(items: Iterable[FileStat | Skipped], top: int = 0,
              tick: Callable[[int], None] | None = None,
              users: dict[tuple[int, int], set[int]] | None = None) -> FilesReport:
    """Fold the walk into a report; with `top` only the N files with the most cached bytes are
    kept (a heap: a tree of millions of files does not become a list). tick(n) after each item.
    With `users` ((dev, inode) -> pids) each row gets "owners": the pids that map or hold it open."""
    rows: list[dict[str, Any]] = []
    heap: list[tuple[int, int, dict[str, Any]]] = []
    total: dict[str, Any] = {"path": "", "size": 0, **{k: 0 for k in COUNTS}}
    skipped: dict[str, list[str]] = {}
    n = seen = 0
    for item in items:
        seen += 1
        if tick is not None:
            tick(seen)
        if isinstance(item, Skipped):
            skipped.setdefault(item.reason, []).append(item.path)
            continue
        n += 1
        row = file_row(item, users)
        total["size"] += row["size"]
        for k in COUNTS:
            total[k] = None if total[k] is None or row[k] is None else total[k] + row[k]
        if top:
            # (resident, -n): ties keep the walk's order
            entry = (row["resident"], -n, row)
            if len(heap) < top:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:  # n is unique: the rows are never compared
                heapq.heapreplace(heap, entry)
        else:
            rows.append(row)
    if top:
        rows = [r for _, _, r in sorted(heap, key=lambda e: (-e[0], -e[1]))]
    pages = (total["size"] + PAGE_SIZE - 1) // PAGE_SIZE
    total["resident_pct"] = None
    if pages and total["resident"] is not None:
        total["resident_pct"] = round(min(100.0, 100.0 * total["resident"] / (pages * PAGE_SIZE)), 1)
    return FilesReport(rows, total, n, skipped)


@dataclass
class FilePages:
    """A file's resident pages as the 2007 view sees them: Pages indexed by file page (vpn is
    the file page index), kpagecount less pmaps' own mapping, and the charged memcg per page."""

    path: str
    size: int
    pages: Pages
    known: Known
    cgroup: np.ndarray | None = None  # kpagecgroup inode per page
    cgroup_names: dict[int, str] = field(default_factory=dict)


def file_pages(path: str, want_cgroup: bool = False) -> FilePages:
    """Map, fault in only the resident pages, and look their PFNs up (kernel.pagecache.map_resident)."""
    import numpy as np

    from ..kernel import cgroup
    from ..kernel import pagemap as pmb
    from ..kernel.kpage import PfnReader, lookup_cgroup
    from ..model import Known, Pages

    with pc.map_resident(path) as m:
        pfns = m.pm & pmb.PM_PFN_MASK
        known_pfn = bool(len(pfns)) and bool(pfns.all())  # zeroed without CAP_SYS_ADMIN
        flags = counts = cg = None
        if known_pfn:
            with PfnReader() as rd:
                flags, counts = rd.lookup(pfns)
            if want_cgroup:
                cg = lookup_cgroup(pfns)
    if counts is not None:
        # Our own mapping is one of the mappers: the others are what the user asks about.
        counts = np.maximum(counts.astype(np.int64) - 1, 0).astype(np.uint64)
    n = len(m.index)
    pages = Pages(m.index, m.pm, np.full(n, pmb.CAT_UNKNOWN, np.uint16), flags, counts)
    known = Known(pfn=known_pfn, flags=flags is not None, count=counts is not None)
    names: dict[int, str] = {}
    if cg is not None:
        h = cgroup.find_memory_hierarchy()
        names = cgroup.memcg_dirs(h) if h else {}
        names[0] = "-"
    return FilePages(path, m.size, pages, known, cg, names)
