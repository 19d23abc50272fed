"""Dataset rows (docs/dataset.md): one row per VMA of a sample, its footprint through the engine,
beside the identity columns that make rows of many hosts comparable; and the sample's page ranges
as rows of the `ranges` table (what diff and heatmap read back). Pure."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import Known, Sample, Snapshot, SystemScan
from ..store.dataset import known_text
from ..store.recording import check_sample
from .footprint import Facts, figures, finish
from .system import mapping_name, mm_reps, page_figures

# Range rows per batch (one Parquet row group) of `top --dataset`'s ranges file: ~40 MB of columns
# while converted (six int64s, three strings per row), ~1 MB compressed.
RANGE_BATCH = 1 << 18
VERSION = 2  # 2 added dev, inode, known, ranges and the ranges table (docs/dataset.md)
# Byte figures per VMA (the engine's rules on ranges): `thp` counts anonymous pages of transparent
# huge folios by kpageflags, `anon_thp` smaps' AnonHugePages (PMD-mapped, from the samples' state).
FIGURES = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "dirty", "referenced", "ksm", "zero_page", "hugetlb",
           "thp", "anon_thp")


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


def sample_rows(s: Sample, ident: Identity, build_ids: dict[str, str | None],
                ranges: bool = False) -> dict[str, list[Any]]:
    """Columns (name -> values, one per VMA) for one sample; None where a figure is unknown.
    `ranges`: the sample's range_rows are written beside (the `ranges` column counts them)."""
    n = len(s.vmas)
    figs = figures(Facts.of_sample(s), FIGURES)
    sums = {k: np.bincount(s.vma, weights=v, minlength=n).astype(np.int64) for k, v in figs.cols.items()} \
        if len(s) else {k: np.zeros(n, dtype=np.int64) for k in FIGURES}
    per = [finish({k: int(sums[k][i]) for k in FIGURES}, figs.unknown, FIGURES) for i in range(n)]
    cols = _rows(s.vmas, ident, build_ids, s.time, s.seq, s.known, s.exclusive_known, len(s) if ranges else None)
    for k in FIGURES:
        cols[k] = [p[k] for p in per]
    return cols


def range_rows(s: Sample, ident: Identity) -> dict[str, Any]:
    """The `ranges` table's columns for one sample: one row per range (numpy columns), its first
    page counted from its VMA's start. No PFN, ever."""
    n = len(s)
    starts = s.vma_starts()
    hexes = np.array([f"{v.start:x}" for v in s.vmas], dtype=object)
    return {
        "version": np.full(n, VERSION, dtype=np.int32),
        "time": np.full(n, s.time),
        "seq": np.full(n, s.seq, dtype=np.int64),
        "boot_id": [ident.boot_id] * n,
        "pid": np.full(n, ident.pid, dtype=np.int64),
        "start_ticks": np.full(n, ident.start_ticks, dtype=np.int64),
        "comm": [ident.comm] * n,
        "vma_index": s.vma.astype(np.int32),
        "vma_start": hexes[s.vma] if n else np.zeros(0, dtype=object),
        "page": (s.vpn - (starts[s.vma] >> np.uint64(PAGE_SHIFT))).astype(np.int64) if n else np.zeros(0, np.int64),
        "count": s.count.astype(np.int64),
        "state": s.state.astype(np.int64),  # bits 0-39 (model/state.py): never negative
        "mapcount": s.mapcount.astype(np.int64),
    }


def concat_rows(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several range_rows (or sample_rows) column sets as one."""
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def scan_range_rows(scan: SystemScan, idents: dict[int, Identity], seq: int, counts: dict[int, int],
                    batch: int = RANGE_BATCH) -> Iterator[dict[str, Any]]:
    """The `ranges` rows of every process of a scan that has an identity (`top --dataset`), `batch`
    rows at a time (the last fewer): one process's sample is built from its pages in the scan (the scan's
    map counts and flags, as `record` reads them) and dropped once its rows are out, so memory is
    one batch beyond the scan. `counts` gets each process's number of rows (the `ranges` column);
    a process whose pages do not make a valid sample (a torn maps read) gets none."""
    held: list[dict[str, Any]] = []
    n = 0
    for p in scan.procs:
        ident = idents.get(p.pid)
        if ident is None:
            continue
        s = Sample.of_snapshot(Snapshot(p.pid, ident.comm, p.vmas, scan.pages.take(slice(p.lo, p.hi)), scan.known,
                                        time=scan.time))
        s.seq = seq
        try:
            check_sample(s)
        except ValueError:
            continue
        counts[p.pid] = len(s)
        if not len(s):
            continue
        held.append(range_rows(s, ident))
        n += len(s)
        while n >= batch:
            rows = concat_rows(held)
            yield {k: v[:batch] for k, v in rows.items()}
            held, n = [{k: v[batch:] for k, v in rows.items()}], n - batch
    if n:
        yield concat_rows(held)


def _rows(vmas: list[Vma], ident: Identity, build_ids: dict[str, str | None], when: float, seq: int,
          known: Known, exclusive: bool, ranges: int | None) -> dict[str, list[Any]]:
    """The identity and VMA columns of one process's rows."""
    n = len(vmas)
    return {
        "version": [VERSION] * n,
        "time": [when] * n,
        "seq": [seq] * n,
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
        "vma_start": [f"{v.start:x}" for v in vmas],
        "vma_size": [v.end - v.start for v in vmas],
        "perms": [v.perms for v in vmas],
        "file_offset": [v.offset for v in vmas],
        "path": [v.path or None for v in vmas],
        "mapping": [mapping_name(v) for v in vmas],
        "build_id": [build_ids.get(v.path) if v.path.startswith("/") else None for v in vmas],
        "dev": [v.dev for v in vmas],
        "inode": [v.inode for v in vmas],
        "known": [known_text(known, exclusive)] * n,
        "ranges": [ranges] * n,
    }


def scan_rows(scan: SystemScan, idents: dict[int, Identity], build_ids: dict[str, str | None],
              seq: int = 0, ranges: dict[int, int] | None = None) -> dict[str, list[Any]]:
    """Columns for every process of a scan that has an identity (`top --dataset`): one row per VMA,
    figures as its smaps would show them (SwapPss over the whole scan). `ranges`: the rows each
    process has in the `ranges` table (scan_range_rows' counts; a process missing: none written)."""
    reps = mm_reps(scan)
    figs = page_figures(scan, reps, FIGURES)
    cols: dict[str, list[Any]] = {}
    for p in scan.procs:
        ident = idents.get(p.pid)
        if ident is None:
            continue
        assert p.fixed is None, "a VMA's figures need all its pages in the scan (no scan cache)"
        per = [finish(figs.between(lo, hi), figs.unknown, FIGURES)
               for lo, hi in zip(p.vma_lo.tolist(), p.vma_hi.tolist())]
        part = _rows(p.vmas, ident, build_ids, scan.time, seq, scan.known, True,
                     None if ranges is None else ranges.get(p.pid))
        for k in FIGURES:
            part[k] = [x[k] for x in per]
        for k, v in part.items():
            cols.setdefault(k, []).extend(v)
    return cols
