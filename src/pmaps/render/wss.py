"""`pmaps wss` output: per-cycle totals, a table per VMA, page ages, and the method's limits."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..analysis.wss import VmaWss, WssResult, totals
from ..numeric import PAGE_SHIFT, PAGE_SIZE
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-wss/1"
CSV_HEADER = ["start", "end", "perms", "path", "resident_bytes", "accessed_bytes", "located_bytes"]


def _runs_in(rs: tuple[np.ndarray, np.ndarray], start: int, end: int) -> list[list[int]]:
    """[[address, pages], ...] of the last cycle's located runs inside [start, end)."""
    first, n = rs
    lo, hi = np.searchsorted(first, [start >> PAGE_SHIFT, end >> PAGE_SHIFT])
    return [[a << PAGE_SHIFT, k] for a, k in zip(first[lo:hi].tolist(), n[lo:hi].tolist())]


@dataclass
class WssView(View):
    res: WssResult
    rows: list[VmaWss]
    schema: str = SCHEMA
    formats: tuple[str, ...] = ("text", "json", "csv")
    json_indent: int | None = 1

    @classmethod
    def build(cls, res: WssResult, all_vmas: bool = False, sort: str = "address", limit: int = 0) -> WssView:
        rows = [r for r in res.rows if all_vmas or r.resident or r.accessed]
        if sort == "accessed":
            rows.sort(key=lambda r: (-r.accessed, r.vma.start))
        elif sort == "resident":
            rows.sort(key=lambda r: (-r.resident, r.vma.start))
        if limit:
            rows = rows[:limit]
        return cls(res, rows)

    def document(self) -> dict[str, Any]:
        r = self.res
        return {"schema": SCHEMA, "pid": r.pid, "comm": r.comm, "method": r.method, "interval": r.interval,
                "intervals": r.intervals, "limits": r.limits, "cycles": r.cycles,
                "vmas": [{"start": v.vma.start, "end": v.vma.end, "perms": v.vma.perms, "path": v.vma.path,
                          "resident": v.resident, "accessed": v.accessed, "located": v.located, "counted": v.counted,
                          "located_runs": _runs_in(r.runs, v.vma.start, v.vma.end)} for v in self.rows],
                "ages": [{"age": a, "pages": n} for a, n in r.ages]}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return CSV_HEADER, ([v.vma.start, v.vma.end, v.vma.perms, v.vma.path, v.resident * PAGE_SIZE,
                             v.accessed * PAGE_SIZE, v.located * PAGE_SIZE] for v in self.rows)

    def text(self, out: TextIO, unit: str) -> None:
        r, u = self.res, unit

        def b(pages: int) -> str:
            return fmt_bytes(pages * PAGE_SIZE, u)

        n = len(r.cycles)
        out.write(f"pmaps wss: pid {r.pid} ({printable(r.comm)}), method {r.method}, "
                  f"{n} cycle{'s' * (n != 1)} of {r.interval:g}s")
        if any(w > r.interval for w in r.intervals):  # --max-cpu stretched them
            out.write(f" (stretched to {max(r.intervals):.3g}s by the CPU budget)")
        out.write("\n")
        for i, c in enumerate(r.cycles, 1):
            out.write(f"cycle {i}: accessed {b(c['accessed'])} of {b(c['resident'])} resident "
                      f"(located page by page: {b(c['located'])})\n")
        h = unit_header(u)
        table = [[f"{v.vma.start:x}-{v.vma.end:x}", v.vma.perms, b(v.resident), b(v.accessed), b(v.located), v.vma.path]
                 for v in self.rows]
        t = totals(r.rows)
        out.write("\n")
        write_table(out, ["ADDRESS", "PERMS", "RESIDENT" + h, "ACCESSED" + h, "LOCATED" + h, "MAPPING"], table, left=2,
                    text_last=True,
                    footer=[["total", "", b(t["resident"]), b(t["accessed"]), b(t["located"]), ""]])
        if len(self.rows) < sum(1 for v in r.rows if v.resident or v.accessed):
            out.write(f"({len(self.rows)} of the VMAs with resident or accessed pages shown; totals are of all)\n")
        if n > 1:
            out.write("\npage ages: resident pages by intervals since their last located access\n")
            write_table(out, ["AGE", "PAGES", "SIZE" + h], [[a, str(k), b(k)] for a, k in r.ages], left=1)
        out.write("\n" + "\n".join(f"# {ln}" for ln in r.limits) + "\n")
