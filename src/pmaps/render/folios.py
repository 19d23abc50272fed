"""`pmaps --folios`: bytes per VMA by what backs them (folio size, hugetlb, KSM, zero page) and the
unmapped part of partly mapped large folios."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..analysis.folios import FolioRow
from ..model import Vma
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-folios/1"
EXTRA = (("hugetlb", "HUGETLB"), ("ksm", "KSM"), ("zero_page", "ZERO"), ("partial_unmapped", "PARTIAL"))


def size_label(nbytes: int) -> str:
    return f"{nbytes >> 20}M" if nbytes >= 1 << 20 else f"{nbytes >> 10}K"


@dataclass
class ProcessFolios:
    pid: int
    comm: str
    rows: list[tuple[Vma, FolioRow]]
    total: FolioRow = field(default_factory=FolioRow)
    average_mapcounts: bool | None = None  # CONFIG_NO_PAGE_MAPCOUNT (6.15+): per-folio averages

    @classmethod
    def build(cls, pid: int, comm: str, vmas: list[Vma], rows: list[FolioRow],
              average_mapcounts: bool | None) -> ProcessFolios:
        total = FolioRow()
        for r in rows:
            total.add(r)
        kept = [(v, r) for v, r in zip(vmas, rows) if r.by_size or r.hugetlb or r.ksm or r.zero_page]
        return cls(pid, comm, kept, total, average_mapcounts)


def _row_dict(r: FolioRow) -> dict[str, Any]:
    return {"bytes_by_folio_size": {str(k): v for k, v in sorted(r.by_size.items())}, "hugetlb": r.hugetlb,
            "ksm": r.ksm, "zero_page": r.zero_page, "partial_unmapped": r.partial_unmapped,
            "partial_folios": r.partial_folios}


@dataclass
class FoliosView(View):
    processes: list[ProcessFolios]
    schema: str = SCHEMA

    def document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "processes": [
            {"pid": p.pid, "comm": p.comm, "mapcounts_are_folio_averages": p.average_mapcounts,
             "total": _row_dict(p.total),
             "vmas": [{"start": v.start, "end": v.end, "perms": v.perms, "path": v.path, **_row_dict(r)}
                      for v, r in p.rows]} for p in self.processes]}

    def records(self) -> Iterable[dict[str, Any]]:
        for p in self.processes:
            for v, r in p.rows:
                yield {"schema": SCHEMA, "pid": p.pid, "comm": p.comm, "start": v.start, "end": v.end,
                       "perms": v.perms, "path": v.path, **_row_dict(r)}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        sizes = sorted({s for p in self.processes for s in p.total.by_size})
        head = ["pid", "comm", "start", "end", "perms", "path", *[f"folio_{s}" for s in sizes], *(k for k, _ in EXTRA)]
        return head, ([p.pid, p.comm, v.start, v.end, v.perms, v.path, *[r.by_size.get(s, 0) for s in sizes],
                       *(getattr(r, k) for k, _ in EXTRA)] for p in self.processes for v, r in p.rows)

    def text(self, out: TextIO, unit: str) -> None:
        suffix = unit_header(unit)
        for n, p in enumerate(self.processes):
            if n:
                out.write("\n")
            if len(self.processes) > 1:
                out.write(f"# {p.pid} {printable(p.comm)}\n")
            sizes = sorted(p.total.by_size)
            header = ["ADDRESS", "PERMS", *[size_label(s) + suffix for s in sizes], *(h + suffix for _, h in EXTRA),
                      "MAPPING"]

            def cells(r: FolioRow, sizes: list[int] = sizes) -> list[str]:
                return [*(fmt_bytes(r.by_size.get(s, 0), unit) for s in sizes),
                        *(fmt_bytes(getattr(r, k), unit) for k, _ in EXTRA)]

            rows = [[f"{v.start:012x}", v.perms, *cells(r), v.path] for v, r in p.rows]
            write_table(out, header, rows, left=2, footer=[["total", "", *cells(p.total), ""]], text_last=True)
            out.write("# columns: bytes mapped from folios of each size (4K: order-0 pages); PARTIAL: bytes of "
                      f"large folios left unmapped ({p.total.partial_folios} partly mapped folios)\n")
            if p.average_mapcounts:
                out.write("# this kernel keeps per-folio average map counts (CONFIG_NO_PAGE_MAPCOUNT): MAPCOUNT and "
                          "PSS of large folios are averages\n")
