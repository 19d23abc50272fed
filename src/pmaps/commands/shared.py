"""pmaps shared PID PID...: pages physically in common (same PFN), per pair and per VMA of the first."""
from __future__ import annotations

import argparse
import json
from typing import TextIO

from ..analysis.sharing import Sharing, sharing
from ..collect import Options, Process, parse_pid
from ..errors import AccessDenied, UsageError
from ..kernel import caps as capsmod
from ..render.rows import Col, RowsView, write_rows
from ..render.table import write_csv
from . import Command, add_output_options

SCHEMA = "pmaps-shared/1"


def pair_view(sh: Sharing) -> RowsView:
    comm = dict(zip(sh.pids, sh.comms))
    rows = [{"pids": [a, b], "a": a, "comm_a": comm[a], "b": b, "comm_b": comm[b], "shared_bytes": n}
            for a, b, n in sh.pairs]
    cols = [Col("a", "PID"), Col("comm_a", "COMMAND", left=True), Col("b", "PID"), Col("comm_b", "COMMAND", left=True),
            Col("shared_bytes", "SHARED", True)]
    return RowsView(SCHEMA, cols, rows)


def vma_view(sh: Sharing) -> RowsView:
    others = sh.pids[1:]
    rows = []
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


def _machine_vma(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if not k.startswith("with_") and k not in ("address", "pct")}


class Shared(Command):
    """Pages physically shared (same PFN) between processes: per pair, and per VMA of the first PID.

    The first PID is the one to explain, e.g. a prefork server's parent with its workers: how much
    copy-on-write sharing is left. Needs root (PFNs).
    """

    name = "shared"
    order = 22

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pids", nargs="+", metavar="PID", help="two or more process IDs; the first is broken down")
        p.add_argument("--no-scan", action="store_true", help="read pagemap instead of PAGEMAP_SCAN")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pids = [parse_pid(p) for p in args.pids]
        if len(pids) < 2:
            raise UsageError("give at least two PIDs")
        caps = capsmod.probe()
        if not caps.sys_admin:
            raise AccessDenied("pmaps shared compares physical page numbers, which only root (CAP_SYS_ADMIN) "
                               "can read in /proc/PID/pagemap")
        opts = Options(flags=True, counts=False, scan=False if args.no_scan else None)
        snaps = []
        for pid in pids:
            with Process(pid, opts, caps) as proc:
                snaps.append(proc.snapshot())
        sh = sharing(snaps)
        pv, vv = pair_view(sh), vma_view(sh)
        if args.format == "json":
            doc = {"schema": SCHEMA,
                   "processes": [{"pid": p, "comm": c, "rss": r} for p, c, r in zip(sh.pids, sh.comms, sh.rss)],
                   "pairs": [{"pids": r["pids"], "shared_bytes": r["shared_bytes"]} for r in pv.rows],
                   "vmas": [_machine_vma(r) for r in vv.rows], "total": vv.total}
            out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        elif args.format == "ndjson":
            for r in pv.rows:
                out.write(json.dumps({"schema": SCHEMA, "kind": "pair", "pids": r["pids"],
                                      "shared_bytes": r["shared_bytes"]}, separators=(",", ":")) + "\n")
            for r in vv.rows:
                out.write(json.dumps({"schema": SCHEMA, "kind": "vma", "pid": pids[0], **_machine_vma(r)},
                                     separators=(",", ":")) + "\n")
        elif args.format == "csv":
            keys = ["start", "end", "perms", "path", "rss", "shared", "private", *[f"with_{p}" for p in pids[1:]]]
            write_csv(out, keys, [[r[k] for k in keys] for r in vv.rows])
        else:
            write_rows(out, pv, "text", args.unit)
            out.write(f"\n# VMAs of {pids[0]} ({sh.comms[0]}): resident, and how much is the same pages as in "
                      + ", ".join(map(str, pids[1:])) + "\n")
            write_rows(out, vv, "text", args.unit)
        return 0
