"""--summary: a footprint table per VMA with process totals (text table, JSON, NDJSON, CSV)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TextIO

from ..analysis.footprint import Footprint
from ..kernel.maps import Vma
from .table import write_csv, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-summary/1"
COLS = ("size", "rss", "pss", "uss", "swap", "anon_thp", "dirty", "referenced")


@dataclass
class SummaryView:
    """One process: per-VMA rows of byte figures, then the totals."""

    pid: int
    comm: str
    rows: list[tuple[Vma, dict[str, int | None]]] = field(default_factory=list)
    total: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def build(cls, pid: int, comm: str, vmas: list[Vma], fps: list[Footprint]) -> SummaryView:
        view = cls(pid, comm)
        tot = Footprint()
        for vma, fp in zip(vmas, fps):
            view.rows.append((vma, {"size": vma.size, **fp.as_dict()}))
            tot = tot + fp
        view.total = {"size": sum(v.size for v in vmas), **tot.as_dict()}
        return view


def write_summary(out: TextIO, views: list[SummaryView], fmt: str, unit: str = "human") -> None:
    if fmt == "json":
        doc = {"schema": SCHEMA, "processes": [_view_dict(v) for v in views]}
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        return
    if fmt == "ndjson":
        for v in views:
            for vma, vals in v.rows:
                out.write(json.dumps({"schema": SCHEMA, "pid": v.pid, "comm": v.comm, **_vma_dict(vma), **vals},
                                     separators=(",", ":")) + "\n")
        return
    if fmt == "csv":
        header = ["pid", "comm", "start", "end", "perms", "path", *COLS]
        rows = [[v.pid, v.comm, f"{vma.start:x}", f"{vma.end:x}", vma.perms, vma.path, *(vals[c] for c in COLS)]
                for v in views for vma, vals in v.rows]
        write_csv(out, header, rows)
        return
    for n, v in enumerate(views):
        if n:
            out.write("\n")
        if len(views) > 1:
            out.write(f"# {v.pid} {v.comm}\n")
        suffix = unit_header(unit)
        header = ["address", "perms", *(c.upper() + suffix for c in COLS), "path"]
        rows = [[f"{vma.start:012x}", vma.perms, *(fmt_bytes(vals[c], unit) for c in COLS), vma.path]
                for vma, vals in v.rows]
        total = [["total", "", *(fmt_bytes(v.total[c], unit) for c in COLS), ""]]
        write_table(out, header, rows, left=2, footer=total, text_last=True)


def _vma_dict(vma: Vma) -> dict[str, object]:
    return {"start": vma.start, "end": vma.end, "perms": vma.perms, "offset": vma.offset, "dev": vma.dev,
            "inode": vma.inode, "path": vma.path}


def _view_dict(v: SummaryView) -> dict[str, object]:
    return {"pid": v.pid, "comm": v.comm, "total": v.total,
            "vmas": [{**_vma_dict(vma), **vals} for vma, vals in v.rows]}
