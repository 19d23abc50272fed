"""A Sample: one moment of a process as ranges (what recordings store, diff and watch compare). Pure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernel.maps import Vma
from .ranges import ranges_of
from .snapshot import Snapshot
from .state import U64, Known


@dataclass
class Sample:
    """Parallel numpy columns, one row per range, plus the VMAs and metadata."""

    pid: int
    comm: str
    vmas: list[Vma]
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

    def __len__(self) -> int:
        return len(self.vpn)

    @property
    def end(self) -> np.ndarray:
        return self.vpn + self.count.astype(U64)

    def vma_starts(self) -> np.ndarray:
        return np.array([v.start for v in self.vmas], dtype=U64)

    @classmethod
    def of_snapshot(cls, snap: Snapshot) -> Sample:
        """A snapshot's pages as ranges (full state word, swapped pages included), as take_sample makes."""
        parts = [(i, ranges_of(p, snap.known, full=True, with_pfn=False, swap=True)) for i, p in snap.chunks()]
        parts = [(i, r) for i, r in parts if len(r)]
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return cls(snap.pid, snap.comm, snap.vmas, snap.known, z.astype(np.int32), z.astype(U64), z,
                       z.astype(U64), z, None, snap.time)
        return cls(snap.pid, snap.comm, snap.vmas, snap.known,
                   np.concatenate([np.full(len(r), i, dtype=np.int32) for i, r in parts]),
                   np.concatenate([r.vpn for _, r in parts]).astype(U64),
                   np.concatenate([r.count for _, r in parts]).astype(np.int64),
                   np.concatenate([r.state for _, r in parts]).astype(U64),
                   np.concatenate([r.mapcount for _, r in parts]).astype(np.int64), None, snap.time)
