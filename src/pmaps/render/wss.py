"""`pmaps wss` output: per-cycle totals, a table per VMA, page ages, and the method's limits."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..analysis.wss import WssResult, WssRows, totals
from ..numeric import PAGE_SHIFT, PAGE_SIZE
from .output import View
from .table import cell_matrix, char_matrix, hex_ranges, printable, unprintable, write_columns, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-wss/1"
U64 = np.uint64
CSV_HEADER = ["start", "end", "perms", "path", "resident_bytes", "accessed_bytes", "located_bytes"]


def _runs_in(rs: tuple[np.ndarray, np.ndarray], start: np.ndarray, end: np.ndarray) -> list[list[list[int]]]:
    """Per VMA [start, end): [[address, pages], ...] of the last cycle's located runs inside it."""
    first, n = rs
    lo = np.searchsorted(first, (start >> U64(PAGE_SHIFT)).astype(np.int64)).tolist()
    hi = np.searchsorted(first, (end >> U64(PAGE_SHIFT)).astype(np.int64)).tolist()
    fl, nl = first.tolist(), n.tolist()
    return [[[a << PAGE_SHIFT, k] for a, k in zip(fl[x:y], nl[x:y])] for x, y in zip(lo, hi)]


@dataclass
class WssView(View):
    res: WssResult
    rows: WssRows  # the rows shown
    schema: str = SCHEMA
    formats: tuple[str, ...] = ("text", "json", "csv")
    json_indent: int | None = 1

    @classmethod
    def build(cls, res: WssResult, all_vmas: bool = False, sort: str = "address", limit: int = 0) -> WssView:
        cols = WssRows.of(res.rows)
        acc = cols.accessed
        idx = np.arange(len(cols)) if all_vmas else np.flatnonzero((cols.resident != 0) | (acc != 0))
        if sort in ("accessed", "resident"):
            key = acc if sort == "accessed" else cols.resident
            idx = idx[np.lexsort((cols.table.start[idx], -key[idx]))]
        if limit:
            idx = idx[:limit]
        return cls(res, cols.take(idx))

    def document(self) -> dict[str, Any]:
        r, c = self.res, self.rows
        t = c.table
        runs = _runs_in(r.runs, t.start, t.end)
        return {"schema": SCHEMA, "pid": r.pid, "comm": r.comm, "method": r.method, "interval": r.interval,
                "intervals": r.intervals, "limits": r.limits, "cycles": r.cycles,
                "vmas": [{"start": v.vma.start, "end": v.vma.end, "perms": v.vma.perms, "path": v.vma.path,
                          "resident": v.resident, "accessed": v.accessed, "located": v.located, "counted": v.counted,
                          "located_runs": rs} for v, rs in zip(c, runs)],
                "ages": [{"age": a, "pages": n} for a, n in r.ages]}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        c = self.rows
        t = c.table
        return CSV_HEADER, zip(t.start.tolist(), t.end.tolist(), t.perms, t.path, (c.resident * PAGE_SIZE).tolist(),
                               (c.accessed * PAGE_SIZE).tolist(), (c.located * PAGE_SIZE).tolist())

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
        shown = self.rows
        t = totals(r.rows)
        out.write("\n")
        vt = shown.table
        head = ["ADDRESS", "PERMS", "RESIDENT" + h, "ACCESSED" + h, "LOCATED" + h, "MAPPING"]
        foot = ["total", "", b(t["resident"]), b(t["accessed"]), b(t["located"]), ""]
        # perms: each distinct value made a row of characters once, then picked for every VMA
        kinds, code = vt.kinds("perms")
        cols = [hex_ranges(vt.start, vt.end),
                char_matrix(kinds, max(map(len, kinds), default=0), left=True)[code]
                if not unprintable("".join(kinds)) else [kinds[k] for k in code.tolist()],
                *(cell_matrix(x, b, max(len(head[j]), len(foot[j])))
                  for j, x in enumerate((shown.resident, shown.accessed, shown.located), start=2)),
                list(vt.path)]
        write_columns(out, head, cols, left=2, text_last=True, footer=[foot])
        every = WssRows.of(r.rows)
        if len(shown) < int(np.count_nonzero((every.resident != 0) | (every.accessed != 0))):
            out.write(f"({len(shown)} of the VMAs with resident or accessed pages shown; totals are of all)\n")
        if n > 1:
            out.write("\npage ages: resident pages by intervals since their last located access\n")
            write_table(out, ["AGE", "PAGES", "SIZE" + h], [[a, str(k), b(k)] for a, k in r.ages], left=1)
        out.write("\n" + "\n".join(f"# {ln}" for ln in r.limits) + "\n")
