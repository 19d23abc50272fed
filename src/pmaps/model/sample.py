"""A Sample: one moment of a process as ranges (what recordings store, diff and watch compare). Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..kernel.maps import Vma, VmaTable
from .pages import Pages
from .ranges import Ranges, batch_ranges
from .snapshot import Snapshot, page_groups
from .state import U64, Known


@dataclass
class Sample:
    """Parallel numpy columns, one row per range, plus the VMAs and metadata.

    The VMAs are kept as columns (`table`; a list of `Vma` is turned into one): a sample of a
    process of 65,000 VMAs is taken, compared and stored without a Python object per VMA, and
    `vmas` makes the objects only when asked for."""

    pid: int
    comm: str
    table: VmaTable  # the VMAs; a list[Vma] given here is made a VmaTable
    known: Known
    vma: np.ndarray  # int32: index into vmas of each range
    vpn: np.ndarray  # u64: first page (address >> 12)
    count: np.ndarray  # int64: pages
    state: np.ndarray  # u64: state word
    mapcount: np.ndarray  # int64: -1 unknown
    pfn: np.ndarray | None = None  # u64 first PFN, only with --pfn
    time: float = 0.0
    seq: int = 0
    cost: float = 0.0  # seconds the sample took to collect
    exclusive_known: bool = True  # False for PAGEMAP_SCAN-only samples (no pagemap bit 56)

    if TYPE_CHECKING:  # the generated __init__ also takes the VMAs as a list (made a VmaTable)
        def __init__(self, pid: int, comm: str, table: VmaTable | list[Vma], known: Known, vma: np.ndarray,
                     vpn: np.ndarray, count: np.ndarray, state: np.ndarray, mapcount: np.ndarray,
                     pfn: np.ndarray | None = None, time: float = 0.0, seq: int = 0, cost: float = 0.0,
                     exclusive_known: bool = True) -> None: ...

    def __post_init__(self) -> None:
        self.table = VmaTable.of(self.table)

    @property
    def vmas(self) -> list[Vma]:
        return self.table.vmas

    def __len__(self) -> int:
        return len(self.vpn)

    @property
    def end(self) -> np.ndarray:
        return self.vpn + self.count.astype(U64)

    def vma_starts(self) -> np.ndarray:
        return self.table.start

    @classmethod
    def of_snapshot(cls, snap: Snapshot) -> Sample:
        """A snapshot's pages as ranges (full state word, swapped pages included), as take_sample makes."""
        return cls.of_pages(snap.pid, snap.comm, snap.columns(), snap.pages, snap.known, snap.time)

    @classmethod
    def of_pages(cls, pid: int, comm: str, vmas: list[Vma] | VmaTable, pages: Pages, known: Known,
                 t: float) -> Sample:
        """of_snapshot of a snapshot given as its parts (a stored one's VMAs as a table: no `Vma`
        object per VMA)."""
        pieces = [(g, r) for _upto, r, g in batch_ranges(page_groups(pages, vmas), lambda: known, full=True,
                                                          with_pfn=False, swap=True) if len(r)]
        return cls.of_ranges(pid, comm, vmas, known, pieces, False, 0, t, 0.0)

    @classmethod
    def of_ranges(cls, pid: int, comm: str, vmas: list[Vma] | VmaTable, known: Known,
                  pieces: list[tuple[np.ndarray, Ranges]], with_pfn: bool, seq: int, t: float, cost: float) -> Sample:
        """A sample from pieces of ranges (batch_ranges), each with the VMA index of every range."""
        if pieces:
            vma = np.concatenate([g for g, _ in pieces]).astype(np.int32)
            vpn = np.concatenate([r.vpn for _, r in pieces]).astype(U64)
            count = np.concatenate([r.count for _, r in pieces]).astype(np.int64)
            state = np.concatenate([r.state for _, r in pieces]).astype(U64)
            mc = np.concatenate([r.mapcount for _, r in pieces]).astype(np.int64)
            pfn = np.concatenate([r.pfn for _, r in pieces if r.pfn is not None]).astype(U64) if with_pfn else None
        else:
            vma = np.zeros(0, dtype=np.int32)
            vpn, state = np.zeros(0, dtype=U64), np.zeros(0, dtype=U64)
            count, mc = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            pfn = np.zeros(0, dtype=U64) if with_pfn else None
        table = VmaTable.of(vmas)
        return cls(pid, comm, table, known, vma, vpn, count, state, mc, pfn, t, seq, cost)
