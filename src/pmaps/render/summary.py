"""--summary: a footprint table per VMA with process totals (text table, JSON, NDJSON, CSV)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ..analysis.footprint import finish_columns
from ..kernel.maps import Vma, VmaTable
from ..numeric import distinct
from .output import View
from .table import printable, unprintable, write_table
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
    table: VmaTable = field(default_factory=lambda: VmaTable.of_vmas([]))
    cols: dict[str, np.ndarray | None] = field(default_factory=dict)  # "size" and KEYS: bytes per VMA, None unknown
    total: dict[str, int | None] = field(default_factory=dict)

    @property
    def vmas(self) -> list[Vma]:
        return self.table.vmas

    @property
    def rows(self) -> list[tuple[Vma, dict[str, int | None]]]:
        """(VMA, its figures) per VMA: what the machine formats write."""
        keys = ("size", *KEYS)
        n = len(self.table)
        lists = [[None] * n if self.cols[k] is None else self.cols[k].tolist() for k in keys]  # type: ignore[union-attr]
        return [(vma, dict(zip(keys, vals))) for vma, vals in zip(self.vmas, zip(*lists))]

    @classmethod
    def build(cls, pid: int, comm: str, vmas: list[Vma] | VmaTable, raw: dict[str, np.ndarray],
              unknown: set[str]) -> ProcessSummary:
        """From the engine's raw sums per VMA, one column per figure (footprint.vma_columns)."""
        table = vmas if isinstance(vmas, VmaTable) else VmaTable.of_vmas(vmas)
        view = cls(pid, comm, table)
        fin = finish_columns(raw, unknown, KEYS)
        tot = finish_columns({k: np.array([int(raw[k].sum())]) for k in KEYS}, unknown, KEYS)
        size = (table.end - table.start).astype(np.int64)
        view.cols = {"size": size, **fin}
        view.total = {"size": int(size.sum()), **{k: None if c is None else int(c[0]) for k, c in tot.items()}}
        return view


def _cells(col: np.ndarray | None, n: int, unit: str, width: int = 0) -> list[str]:
    """A column of byte figures as text (fmt_bytes), right-aligned to at least `width` and to its
    widest cell: each distinct value formatted once."""
    if col is None:
        return ["?".rjust(width)] * n
    if n < 64:
        return [fmt_bytes(x, unit).rjust(width) for x in col.tolist()]
    uniq, inv = distinct(col)
    text = [fmt_bytes(x, unit) for x in uniq.tolist()]
    w = max(width, max(map(len, text)))
    cells = np.array([t.rjust(w) for t in text], dtype=object)
    out: list[str] = cells[inv.ravel()].tolist()
    return out


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
            total = ["total", "", *(fmt_bytes(v.total[c], unit) for c in COLS), ""]
            n = len(v.table)
            if n < 64:
                rows = list(zip([f"{s:012x}" for s in v.table.start.tolist()], v.table.perms,
                                *(_cells(v.cols[c], n, unit) for c in COLS), v.table.path))
                write_table(out, header, rows, left=2, footer=[total], text_last=True)
                continue
            # Column by column (write_table's layout): each distinct figure formatted and padded once.
            paths = v.table.path
            if not v.table.plain and unprintable("".join(paths)):
                paths = [printable(p) for p in paths]
            cols: list[list[str]] = []
            for j, cells in enumerate([[f"{s:012x}" for s in v.table.start.tolist()], v.table.perms]):
                w = max(len(header[j]), len(total[j]), max(map(len, cells)))
                if min(map(len, cells)) < w:  # each distinct cell padded once (perms: a few of them)
                    padded = {c: c.ljust(w) for c in set(cells)} if j else {}
                    cells = list(map(padded.__getitem__, cells)) if j else [c.ljust(w) for c in cells]
                cols.append(cells)
            for j, c in enumerate(COLS, start=2):
                cols.append(_cells(v.cols[c], n, unit, max(len(header[j]), len(total[j]))))
            widths = [len(col[0]) for col in cols]
            head = [header[0].ljust(widths[0]), header[1].ljust(widths[1]),
                    *(h.rjust(w) for h, w in zip(header[2:-1], widths[2:])), header[-1]]
            foot = [total[0].ljust(widths[0]), total[1].ljust(widths[1]),
                    *(t.rjust(w) for t, w in zip(total[2:-1], widths[2:])), total[-1]]
            out.write(" ".join(head).rstrip() + "\n")
            out.write("\n".join(map(str.rstrip, map(" ".join, zip(*cols, paths)))) + "\n")
            out.write(" ".join(foot).rstrip() + "\n")
