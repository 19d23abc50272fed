"""MappedScan: the file and shmem pages every process maps, by PFN (what `pmaps cgroups` joins with
kpagecgroup for "charged here, mapped elsewhere"). Pure."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..kernel.status import Ident

SKIP_REASONS = ("exited", "denied", "missing")


@dataclass
class MappedScan:
    """One row per present file/shmem page (pagemap FILE bit) of every scanned process.

    pfn: the page's PFN (int64); proc: index into `procs` (int32); mapping: index into `paths`
    (int32), the path of the VMA it is mapped through ("[anon]" for a shared anonymous mapping;
    each process's VMAs have their own entries)."""

    procs: list[Ident]
    pfn: np.ndarray
    proc: np.ndarray
    mapping: np.ndarray
    paths: list[str]
    skipped: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in SKIP_REASONS})

    @classmethod
    def empty(cls) -> MappedScan:
        z = np.zeros(0, dtype=np.int32)
        return cls([], np.zeros(0, dtype=np.int64), z, z.copy(), [])
