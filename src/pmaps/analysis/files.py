"""Page-cache residency of files: rows per file, totals, the top N, skipped paths by reason."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from ..kernel import pagecache as pc
from ..kernel.pagecache import PAGE_SIZE, FileStat, Skipped

if TYPE_CHECKING:  # numpy and the page model load only for --pages: the table starts faster
    import numpy as np

    from ..model import Known, Pages

COUNTS = ("resident", "dirty", "writeback", "evicted", "recently_evicted")
Users = dict[tuple[int, int], set[int]]  # (st_dev, st_ino) -> pids (kernel.pagecache.file_users)


def resident_pct(cache: int, size: int) -> float | None:
    """Percent of a file's pages resident, one decimal; None for an empty file. Pages past EOF
    cannot be cached, but a large folio is counted whole: capped at 100%."""
    pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    return round(min(100.0, 100.0 * cache / pages), 1) if pages else None


def file_row(f: FileStat, users: Users | None = None) -> dict[str, Any]:
    """One file as bytes (None for what mincore cannot tell); pct of its pages resident."""
    c = f.cache
    row: dict[str, Any] = {"path": f.path, "size": f.size}
    for key, v in zip(COUNTS, c):
        row[key] = None if v is None else v * PAGE_SIZE
    row["resident_pct"] = resident_pct(c.cache, f.size)
    if users is not None:
        row["owners"] = sorted(users.get((f.dev, f.ino), ()))
    return row


class Tally:
    """Totals over the files of a walk (pages; None where mincore cannot tell) and the paths
    skipped, by reason; filled by `count` as the walk goes."""

    def __init__(self) -> None:
        self.nfiles = 0
        self.size = 0
        self.pages: list[int | None] = [0, 0, 0, 0, 0]  # cachestat's five counts, summed
        self.skipped: dict[str, list[str]] = {}

    def count(self, items: Iterable[FileStat | Skipped],
              tick: Callable[[int], None] | None = None) -> Iterator[FileStat]:
        """The FileStats of `items`, counted; Skipped ones are filed away. tick(n) every 256 items."""
        seen = n = size = cache = dirty = wb = ev = rev = 0
        known = True
        skipped = self.skipped
        try:
            for item in items:
                seen += 1
                if tick is not None and not seen & 255:
                    tick(seen)
                if type(item) is not FileStat:
                    skipped.setdefault(item.reason, []).append(item.path)  # type: ignore[union-attr]
                    continue
                n += 1
                size += item.size
                c = item.cache
                cache += c[0]
                if known and c[1] is not None:
                    dirty += c[1]
                    wb += c[2]  # type: ignore[operator]
                    ev += c[3]  # type: ignore[operator]
                    rev += c[4]  # type: ignore[operator]
                else:
                    known = False
                yield item
        finally:  # also when the consumer stops early
            self.nfiles += n
            self.size += size
            p = self.pages
            p[0] = cache + (p[0] or 0)
            for i, v in enumerate((dirty, wb, ev, rev), 1):
                p[i] = v + p[i] if known and p[i] is not None else None  # type: ignore[operator]

    def row(self) -> dict[str, Any]:
        """The totals as a file_row (path "")."""
        total: dict[str, Any] = {"path": "", "size": self.size}
        for key, v in zip(COUNTS, self.pages):
            total[key] = None if v is None else v * PAGE_SIZE
        total["resident_pct"] = None
        if self.size and self.pages[0] is not None:
            total["resident_pct"] = round(min(100.0, 100.0 * self.pages[0] / _pages(self.size)), 1)
        return total


def _pages(size: int) -> int:
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


class FilesReport:
    """What `pmaps files` found: the files to show (FileStat: all, in walk order, or the top N by
    cached bytes), the totals over every file counted, and the paths skipped, by reason; with
    `users`, the pids that map or hold each file ((dev, inode) -> pids).

    A streamed report's `rows` is the walk itself, consumed once: total, nfiles and skipped are
    complete once it has been read (it has already read up to its first file, so that a walk
    that found none is complete at once)."""

    def __init__(self, rows: Iterable[FileStat], tally: Tally, users: Users | None = None,
                 streamed: bool = False, empty: bool = False) -> None:
        self.rows, self.tally, self.users, self.streamed = rows, tally, users, streamed
        self._empty = empty

    @property
    def empty(self) -> bool:
        """No file was counted (known before a streamed report is read)."""
        return self._empty if self.streamed else self.tally.nfiles == 0

    @property
    def nfiles(self) -> int:
        return self.tally.nfiles

    @property
    def skipped(self) -> dict[str, list[str]]:
        return self.tally.skipped

    @property
    def nskipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    @property
    def total(self) -> dict[str, Any]:
        return self.tally.row()

    def dicts(self) -> Iterator[dict[str, Any]]:
        """The rows as file_row dicts (bytes, percent, owners)."""
        users = self.users
        for f in self.rows:
            yield file_row(f, users)


def summarize(items: Iterable[FileStat | Skipped], top: int = 0,
              tick: Callable[[int], None] | None = None,
              users: Users | None = None, stream: bool = False) -> FilesReport:
    """Fold the walk into a report; with `top` only the N files with the most cached bytes are
    kept (a heap: a tree of millions of files does not become a list). tick(n) every 256 items.
    With `stream` (and no `top`) the rows are not kept: the report's rows are the walk, counted
    as it is written (FilesReport)."""
    tally = Tally()
    counted = tally.count(items, tick)
    if top:
        heap: list[tuple[int, int, FileStat]] = []
        n = 0
        push, replace = heapq.heappush, heapq.heapreplace
        for f in counted:
            n -= 1
            # (resident, -n): ties keep the walk's order; n is unique, the rows are never compared
            entry = (f.cache.cache, n, f)
            if len(heap) < top:
                push(heap, entry)
            elif entry[:2] > heap[0][:2]:
                replace(heap, entry)
        return FilesReport([f for _, _, f in sorted(heap, reverse=True)], tally, users)
    if not stream:
        return FilesReport(list(counted), tally, users)
    first = next(counted, None)
    rows: Iterable[FileStat] = () if first is None else chain((first,), counted)
    return FilesReport(rows, tally, users, streamed=True, empty=first is None)


class FilePages(NamedTuple):
    """A file's resident pages as the 2007 view sees them: Pages indexed by file page (vpn is
    the file page index), kpagecount less pmaps' own mapping, and the charged memcg per page."""

    path: str
    size: int
    pages: Pages
    known: Known
    cgroup: np.ndarray | None  # kpagecgroup inode per page
    cgroup_names: dict[int, str]  # kpagecgroup inode -> cgroup path


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
