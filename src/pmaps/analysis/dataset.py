"""Dataset rows (docs/dataset.md): one row per VMA of a sample, its footprint through the engine,
beside the identity columns that make rows of many hosts comparable. Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import Sample
from .footprint import Facts, figures, finish
from .system import mapping_name

VERSION = 1
# Byte figures per VMA (the engine's rules on ranges; PMD mappings are not in samples, so `thp`
# counts anonymous pages of transparent huge pages by kpageflags instead of AnonHugePages).
FIGURES = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "dirty", "referenced", "ksm", "zero_page", "hugetlb",
           "thp")


@dataclass(frozen=True)
class Identity:
    """Who and where: the same for every row of one sample."""

    host: str
    boot_id: str
    kernel: str
    pid: int
    start_ticks: int  # /proc/PID/stat starttime: with boot_id and pid, one process for ever
    start_time: float  # Unix seconds (btime + start_ticks / CLK_TCK)
    comm: str
    exe: str | None
    cgroup: str | None
    uid: int | None


def sample_rows(s: Sample, ident: Identity, build_ids: dict[str, str | None]) -> dict[str, list[Any]]:
    """Columns (name -> values, one per VMA) for one sample; None where a figure is unknown."""
    n = len(s.vmas)
    figs = figures(Facts.of_sample(s), FIGURES)
    sums = {k: np.bincount(s.vma, weights=v, minlength=n).astype(np.int64) for k, v in figs.cols.items()} \
        if len(s) else {k: np.zeros(n, dtype=np.int64) for k in FIGURES}
    per = [finish({k: int(sums[k][i]) for k in FIGURES}, figs.unknown, FIGURES) for i in range(n)]
    cols: dict[str, list[Any]] = {
        "version": [VERSION] * n,
        "time": [s.time] * n,
        "seq": [s.seq] * n,
        "boot_id": [ident.boot_id] * n,
        "kernel": [ident.kernel] * n,
        "pid": [ident.pid] * n,
        "start_ticks": [ident.start_ticks] * n,
        "start_time": [ident.start_time] * n,
        "comm": [ident.comm] * n,
        "exe": [ident.exe] * n,
        "cgroup": [ident.cgroup] * n,
        "uid": [ident.uid] * n,
        "vma_index": list(range(n)),
        "vma_start": [f"{v.start:x}" for v in s.vmas],
        "vma_size": [v.end - v.start for v in s.vmas],
        "perms": [v.perms for v in s.vmas],
        "file_offset": [v.offset for v in s.vmas],
        "path": [v.path or None for v in s.vmas],
        "mapping": [mapping_name(v) for v in s.vmas],
        "build_id": [build_ids.get(v.path) if v.path.startswith("/") else None for v in s.vmas],
    }
    for k in FIGURES:
        cols[k] = [p[k] for p in per]
    return cols
