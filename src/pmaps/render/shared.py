"""`pmaps shared` output: pages in common per pair of processes, and per VMA of the first."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..analysis.sharing import Sharing
from .output import View
from .rows import Col, RowsView
from .table import printable

SCHEMA = "pmaps-shared/1"


def pair_view(sh: Sharing) -> RowsView:
    comm = dict(zip(sh.pids, sh.comms))
    rows: list[dict[str, Any]] = [{"pids": [a, b], "a": a, "comm_a": comm[a], "b": b, "comm_b": comm[b],
                                   "shared_bytes": n} for a, b, n in sh.pairs]
    cols = [Col("a", "PID"), Col("comm_a", "COMMAND", left=True), Col("b", "PID"), Col("comm_b", "COMMAND", left=True),
            Col("shared_bytes", "SHARED", True)]
    return RowsView(SCHEMA, cols, rows)


def vma_view(sh: Sharing) -> RowsView:
    others = sh.pids[1:]
    rows: list[dict[str, Any]] = []
    for r in sh.vmas:
        pct = f"{100 * r.shared / r.rss:.0f}%" if r.rss else "-"
        rows.append({"start": r.vma.start, "end": r.vma.end, "address": f"{r.vma.start:012x}", "perms": r.vma.perms,
                     "path": r.vma.path, "rss": r.rss, "shared": r.shared, "private": r.rss - r.shared, "pct": pct,
                     "shared_with": {str(k): v for k, v in r.with_each.items()},
                     **{f"with_{k}": v for k, v in r.with_each.items()}})
    cols = [Col("address", "ADDRESS", left=True), Col("perms", "PERMS", left=True), Col("rss", "RSS", True),
            Col("shared", "SHARED", True), Col("pct", "%"),
            *[Col(f"with_{k}", f"W/{k}", True) for k in others], Col("path", "PATH", left=True)]
    total = {"rss": sum(r.rss for r in sh.vmas), "shared": sum(r.shared for r in sh.vmas),
             **{f"with_{k}": sum(r.with_each[k] for r in sh.vmas) for k in others}}
    return RowsView(SCHEMA, cols, rows, total)


def _machine_vma(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("with_") and k not in ("address", "pct")}


@dataclass
class SharedView(View):
    sh: Sharing
    schema: str = SCHEMA

    def text(self, out: TextIO, unit: str) -> None:
        pids = self.sh.pids
        pair_view(self.sh).text(out, unit)
        out.write(f"\n# VMAs of {pids[0]} ({printable(self.sh.comms[0])}): resident, and how much is the same "
                  "pages as in " + ", ".join(map(str, pids[1:])) + "\n")
        vma_view(self.sh).text(out, unit)

    def document(self) -> dict[str, Any]:
        sh, vv = self.sh, vma_view(self.sh)
        return {"schema": SCHEMA,
                "processes": [{"pid": p, "comm": c, "rss": r} for p, c, r in zip(sh.pids, sh.comms, sh.rss)],
                "pairs": [{"pids": r["pids"], "shared_bytes": r["shared_bytes"]} for r in pair_view(sh).rows],
                "vmas": [_machine_vma(r) for r in vv.rows], "total": vv.total}

    def records(self) -> Iterable[dict[str, Any]]:
        for r in pair_view(self.sh).rows:
            yield {"schema": SCHEMA, "kind": "pair", "pids": r["pids"], "shared_bytes": r["shared_bytes"]}
        for r in vma_view(self.sh).rows:
            yield {"schema": SCHEMA, "kind": "vma", "pid": self.sh.pids[0], **_machine_vma(r)}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        keys = ["start", "end", "perms", "path", "rss", "shared", "private", *[f"with_{p}" for p in self.sh.pids[1:]]]
        return keys, ([r[k] for k in keys] for r in vma_view(self.sh).rows)
