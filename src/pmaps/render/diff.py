"""`pmaps diff` output: a text table per VMA, JSON (schema pmaps-diff/1), NDJSON and CSV.

Rows are built from an analysis.diff.Diff, then written (one --format dispatch).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..analysis.diff import KIND_TITLES, KINDS, Diff, VmaDiff
from ..kernel.maps import PAGE_SIZE
from ..model.state import FULL_BITS, LETTERS, PM_SHIFT, state_names
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-diff/1"


def letters(state: int) -> str:
    """Set bits only, as --flags=all letters (kpageflags ':' pagemap); '-' for an absent page."""
    if not state:
        return "-"
    k = "".join(LETTERS[b] for b in FULL_BITS if b < PM_SHIFT and state >> b & 1)
    p = "".join(LETTERS[b] for b in FULL_BITS if b >= PM_SHIFT and state >> b & 1)
    return f"{k}:{p}"


def _mc(v: int) -> int | None:
    return None if v < 0 else v


def change_dicts(v: VmaDiff) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per change range of a VMA."""
    for addr, pages, b, a, mb, ma, k in zip(v.addr.tolist(), v.pages.tolist(), v.before.tolist(), v.after.tolist(),
                                           v.mc_before.tolist(), v.mc_after.tolist(), v.kind.tolist()):
        yield {"addr": addr, "pages": pages, "bytes": pages * PAGE_SIZE, "change": KINDS[k],
               "before": state_names(b), "after": state_names(a), "mapcount_before": _mc(mb),
               "mapcount_after": _mc(ma)}


def vma_head(v: VmaDiff) -> dict[str, Any]:
    m = v.vma
    return {"start": m.start, "end": m.end, "perms": m.perms, "offset": m.offset, "dev": m.dev, "inode": m.inode,
            "path": m.path, "status": v.status}


def to_json(d: Diff) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "a": {"source": d.a_label, "time": d.a_time}, "b": {"source": d.b_label, "time": d.b_time},
        "totals": d.totals(),
        "vmas": [vma_head(v) | {"totals": v.totals(), "changes": list(change_dicts(v))} for v in d.vmas],
    }


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z" if t else "?"


CSV_HEADER = ["vma_start", "vma_end", "perms", "path", "status", "addr", "pages", "bytes", "change", "before", "after",
              "mapcount_before", "mapcount_after"]


@dataclass
class DiffView(View):
    diff: Diff
    schema: str = SCHEMA
    json_indent: int | None = 1

    def document(self) -> dict[str, Any]:
        return to_json(self.diff)

    def records(self) -> Iterable[dict[str, Any]]:
        for v in self.diff.vmas:
            head = vma_head(v)
            for c in change_dicts(v):
                yield {"vma": head} | c

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return CSV_HEADER, ([v.vma.start, v.vma.end, v.vma.perms, v.vma.path, v.status, c["addr"], c["pages"],
                             c["bytes"],
                             c["change"], " ".join(c["before"]), " ".join(c["after"]), c["mapcount_before"],
                             c["mapcount_after"]] for v in self.diff.vmas for c in change_dicts(v))

    def text(self, out: TextIO, unit: str) -> None:
        write_text(out, self.diff, unit)


def write_text(out: TextIO, d: Diff, unit: str = "human") -> None:
    """Per VMA its maps line, then one row per change range; totals by kind at the end."""
    dt = d.b_time - d.a_time if d.a_time and d.b_time else None
    out.write(f"# A: {printable(d.a_label)}  {_stamp(d.a_time)}\n# B: {printable(d.b_label)}  {_stamp(d.b_time)}"
              + (f"  (+{dt:.3f}s)" if dt is not None else "") + "\n")
    if not d.vmas:
        out.write("no page changed state\n")
        return
    size_h = "SIZE" + unit_header(unit)
    for v in d.vmas:
        tag = {"both": "", "new": "  [new in B]", "gone": "  [gone in B]"}[v.status]
        out.write(v.vma.maps_line() + tag + "\n")
        rows = []
        for c, b, a in zip(change_dicts(v), v.before.tolist(), v.after.tolist()):
            mc = "" if c["mapcount_before"] == c["mapcount_after"] else f" {_mcs(c['mapcount_before'])}->" \
                f"{_mcs(c['mapcount_after'])}"
            rows.append([f"  {c['addr']:x}", KIND_TITLES[c["change"]], str(c["pages"]), fmt_bytes(c["bytes"], unit),
                         letters(b), letters(a) + mc])
        wb = max(len("BEFORE"), *(len(r[4]) for r in rows))
        for r in rows:  # BEFORE reads best left-aligned: pad it here, write_table right-aligns
            r[4] = r[4].ljust(wb)
        write_table(out, ["  ADDR", "CHANGE", "PAGES", size_h, "BEFORE".ljust(wb), "AFTER"], rows, left=2)
    tot = d.totals()
    out.write("\n")
    write_table(out, ["CHANGE", "PAGES", size_h], [[KIND_TITLES[k], str(n), fmt_bytes(n * PAGE_SIZE, unit)]
                                                  for k, n in tot.items()], left=1,
                footer=[["total", str(sum(tot.values())), fmt_bytes(sum(tot.values()) * PAGE_SIZE, unit)]])


def _mcs(v: int | None) -> str:
    return "?" if v is None else str(v)
