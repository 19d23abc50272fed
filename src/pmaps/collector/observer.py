"""The observer effect, taken out: pmaps' own process maps libc, ld.so, the interpreter and numpy's
libraries, so while it reads, every page it shares with a target has a map count one higher and
the target's PSS of those pages is lower than the kernel reports when pmaps is not running.

`Observer` reads pmaps' own file-backed mappings (its own pagemap: PFNs need CAP_SYS_ADMIN) and
subtracts its own mappings from the kpagecount of those PFNs, so MAPCOUNT, PSS and USS are what
the kernel shows without pmaps. Only file-backed pages are taken: pmaps shares no anonymous memory
with a target it did not fork. The set is read when the target is opened (by then every library
pmaps needs is mapped) and checked again when the read ends (see `stable`); `--include-self`
keeps the raw kernel view. docs/footprints.md explains it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from ..errors import PmapsError
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.maps import PAGE_SHIFT, Vma, read_maps

U64 = np.uint64


class Observer:
    """PFNs of the file pages this process maps, and how many times it maps each."""

    def __init__(self, pfns: np.ndarray, times: np.ndarray, files: frozenset[tuple[str, int]] = frozenset()) -> None:
        self.pfns = pfns  # sorted unique u64
        self.times = times  # int64, same length
        self.files = files  # (dev, inode) of the files those pages belong to
        # A maps line of one of those files: its start and end (see file_ranges). The pattern
        # starts at a newline, a literal that re finds fast (with `^` and re.M it tries a match at
        # every byte: twice the time), and the files' inodes are grouped by device.
        by_dev: dict[str, list[int]] = {}
        for dev, inode in sorted(files):
            by_dev.setdefault(dev, []).append(inode)
        alts = b"|".join(re.escape(dev.encode()) + b" (?:" + b"|".join(b"%d" % i for i in inodes) + b")"
                         for dev, inodes in by_dev.items())
        self._line = re.compile(rb"\n([0-9a-f]+)-([0-9a-f]+) \S+ [0-9a-f]+ (?:" + alts + rb") ") if files else None

    def file_ranges(self, maps: bytes) -> list[tuple[int, int]]:
        """[start, end) of the VMAs in a maps text that map one of this process's files: one regex
        pass over the bytes, no line decoded (top reads this for every process)."""
        if self._line is None:
            return []
        return [(int(a, 16), int(b, 16)) for a, b in self._line.findall(b"\n" + maps)]

    @classmethod
    def read(cls) -> Observer | None:
        """This process's file-backed present pages; None when PFNs cannot be read (not root)."""
        files: set[tuple[str, int]] = set()

        def keep(v: Vma) -> bool:
            if v.inode and not v.path.startswith("["):
                files.add((v.dev, v.inode))
                return True
            return False

        pm = _own_entries(keep)
        if pm is None:
            return None
        pfn = pm[pmb.present(pm)] & pmb.PM_PFN_MASK
        if len(pfn) and not pfn.any():
            return None  # PFNs hidden (no CAP_SYS_ADMIN): nothing can be matched
        uniq, times = np.unique(pfn, return_counts=True)
        return cls(uniq, times.astype(np.int64), frozenset(files))

    @staticmethod
    def private_pfns() -> np.ndarray:
        """Sorted PFNs of the pages this process alone maps (pagemap's exclusive bit): its own memory,
        which `phys` leaves out. Empty when PFNs cannot be read."""
        pm = _own_entries(lambda v: v.end <= pmb.TASK_SIZE_MAX)
        if pm is None:
            return np.zeros(0, dtype=U64)
        mine = pmb.present(pm) & ((pmb.top_byte(pm) & pmb.TOP_EXCLUSIVE) != 0)
        return np.unique(pm[mine] & pmb.PM_PFN_MASK)

    def __len__(self) -> int:
        return len(self.pfns)

    def index(self, pfn: np.ndarray) -> np.ndarray:
        """Index of each of these PFNs in `pfns`, -1 for those this process does not map."""
        if not len(self.pfns):
            return np.full(len(pfn), -1, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self.pfns, pfn), len(self.pfns) - 1)
        return np.where(self.pfns[idx] == pfn, idx, -1)

    def mine(self, pfn: np.ndarray) -> np.ndarray:
        """Times this process maps each of these PFNs (0 for most)."""
        out = np.zeros(len(pfn), dtype=np.int64)
        if not len(self.pfns) or not len(pfn):
            return out
        idx = np.minimum(np.searchsorted(self.pfns, pfn), len(self.pfns) - 1)
        hit = self.pfns[idx] == pfn
        out[hit] = self.times[idx[hit]]
        return out

    def subtract(self, pfn: np.ndarray, count: np.ndarray) -> np.ndarray:
        """kpagecount values with this process's own mappings taken out (a mapped page keeps >= 1)."""
        mine = self.mine(pfn)
        if not mine.any():
            return count
        c = count.astype(np.int64)
        hit = mine > 0
        # Only pages this process maps; the zero page keeps its count of 0 (never counted).
        c[hit] = np.where(c[hit] > 0, np.maximum(c[hit] - mine[hit], 1), 0)
        return c.astype(count.dtype)

    def stable(self, other: Observer | None) -> bool:
        """Whether the set read again later is the same (it was mapped during all the lookups)."""
        return other is not None and np.array_equal(self.pfns, other.pfns) and np.array_equal(self.times, other.times)


def _own_entries(keep: Callable[[Vma], bool]) -> np.ndarray | None:
    """Pagemap entries of this process's own VMAs that `keep` selects; None when unreadable."""
    pid = os.getpid()
    try:
        vmas = [v for v in read_maps(pid) if keep(v)]
        fd = procfs.open_pagemap(pid)
    except PmapsError:
        return None
    try:
        starts = np.array([v.start >> PAGE_SHIFT for v in vmas], dtype=U64)
        ends = np.array([v.end >> PAGE_SHIFT for v in vmas], dtype=U64)
        return pmb.read_runs(fd, pid, starts, ends)
    except PmapsError:
        return None
    finally:
        procfs.close(fd)
