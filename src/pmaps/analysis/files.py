"""Page-cache residency of files: rows per file, totals, the top N, skipped paths by reason."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..kernel.pagecache import FileStat, Skipped
from ..numeric import PAGE_SIZE

COUNTS = ("resident", "dirty", "writeback", "evicted", "recently_evicted")


def file_row(f: FileStat) -> dict[str, Any]:
    """One file as bytes (None for what mincore cannot tell); pct of its pages resident."""
    c = f.cache
    pages = (f.size + PAGE_SIZE - 1) // PAGE_SIZE
    row: dict[str, Any] = {"path": f.path, "size": f.size}
    for key, v in zip(COUNTS, (c.cache, c.dirty, c.writeback, c.evicted, c.recently_evicted)):
        row[key] = None if v is None else v * PAGE_SIZE
    # Pages past EOF cannot be cached, but a large folio is counted whole: cap at 100%.
    row["resident_pct"] = round(min(100.0, 100.0 * c.cache / pages), 1) if pages else None
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
              tick: Callable[[int], None] | None = None) -> FilesReport:
    """Fold the walk into a report; with `top` only the N files with the most cached bytes are
    kept (a heap: a tree of millions of files does not become a list). tick(n) after each item."""
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
        row = file_row(item)
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
