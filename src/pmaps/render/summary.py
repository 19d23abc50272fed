"""--summary: a footprint table per VMA with process totals (text table, JSON, NDJSON, CSV)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ..analysis.footprint import finish_columns
from ..kernel.maps import Vma
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-summary/1"
COLS = ("size", "rss", "pss", "uss", "swap", "anon_thp", "dirty", "referenced")
# The figures a summary shows (machine formats carry all of them), in output order.
KEYS = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "anon_thp", "dirty", "referenced", "zero_page", "hugetlb")


def vma_dict(vma: Vma) -> dict[str, object]:
    return {"start": vma.start, "end": vma.end, "perms": vma.perms, "offset": vma.offset, "dev": vma.dev,
            "inode": vma.inode, "path": vma.path}


@dataclass
class ProcessSummary:
    """One process: per-VMA rows of byte figures, then the totals."""

    pid: int
    comm: str
    vmas: list[Vma] = field(default_factory=list)
    cols: dict[str, list[int | None]] = field(default_factory=dict)  # "size" and KEYS, one value per VMA
    total: dict[str, int | None] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple[Vma, dict[str, int | None]]]:
        """(VMA, its figures) per VMA: what the machine formats write."""
        keys = ("size", *KEYS)
        return [(vma, dict(zip(keys, vals))) for vma, vals in zip(self.vmas, zip(*(self.cols[k] for k in keys)))]

    @classmethod
    def build(cls, pid: int, comm: str, vmas: list[Vma], raw: dict[str, np.ndarray],
              unknown: set[str]) -> ProcessSummary:
        """From the engine's raw sums per VMA, one column per figure (footprint.vma_columns)."""
        view = cls(pid, comm, vmas)
        fin = finish_columns(raw, unknown, KEYS)
        tot = finish_columns({k: np.array([int(raw[k].sum())]) for k in KEYS}, unknown, KEYS)
        view.cols = {"size": [v.size for v in vmas]}
        for k in KEYS:
            col = fin[k]
            view.cols[k] = [None] * len(vmas) if col is None else col.tolist()
        view.total = {"size": sum(v.size for v in vmas),
                      **{k: None if c is None else int(c[0]) for k, c in tot.items()}}
        return view


@dataclass
class SummaryView(View):
    processes: list[ProcessSummary]
    schema: str = SCHEMA

    def document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "processes": [
            {"pid": v.pid, "comm": v.comm, "total": v.total,
             "vmas": [{**vma_dict(vma), **vals} for vma, vals in v.rows]}
            for v in self.processes]}

    def records(self) -> Iterable[dict[str, Any]]:
        for v in self.processes:
            for vma, vals in v.rows:
                yield {"schema": SCHEMA, "pid": v.pid, "comm": v.comm, **vma_dict(vma), **vals}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        header = ["pid", "comm", "start", "end", "perms", "path", *COLS]
        return header, ([v.pid, v.comm, vma.start, vma.end, vma.perms, vma.path, *(vals[c] for c in COLS)]
                        for v in self.processes for vma, vals in v.rows)

    def text(self, out: TextIO, unit: str) -> None:
        for n, v in enumerate(self.processes):
            if n:
                out.write("\n")
            if len(self.processes) > 1:
                out.write(f"# {v.pid} {printable(v.comm)}\n")
            suffix = unit_header(unit)
            header = ["address", "perms", *(c.upper() + suffix for c in COLS), "path"]
            # Column by column: one map() per figure, not a generator per row.
            n = len(v.vmas)
            cols = [[f"{vma.start:012x}" for vma in v.vmas], [vma.perms for vma in v.vmas],
                    *(list(map(fmt_bytes, v.cols[c], [unit] * n)) for c in COLS), [vma.path for vma in v.vmas]]
            rows = list(zip(*cols))
            total = [["total", "", *(fmt_bytes(v.total[c], unit) for c in COLS), ""]]
            write_table(out, header, rows, left=2, footer=total, text_last=True)
