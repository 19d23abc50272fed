"""pmaps libs: librank; what each library, file and kind of anonymous memory costs across processes."""
from __future__ import annotations

import argparse
import re
from typing import TextIO

from ..analysis import system as S
from ..errors import UsageError
from ..model import SystemScan
from ..render import write
from ..render.rows import Col, RowsView
from . import Command, add_output_options, positive
from ._common import (
    add_chart_options,
    add_filter_options,
    asked_exit,
    charts,
    check_charts,
    load_or_scan,
    report_scan,
    user_namer,
)

SCHEMA = "pmaps-libs/1"
COLS = [Col("rss", "RSS", True), Col("pss", "PSS", True), Col("uss", "USS", True), Col("swap", "SWAP", True),
        Col("procs", "PROCS"), Col("path", "MAPPING", left=True)]


def libs_view(scan: SystemScan, args: argparse.Namespace) -> RowsView:
    reps = S.mm_reps(scan)
    figs = S.page_figures(scan, reps)
    rows = S.sort_rows(S.lib_rows(scan, figs, reps, args.path), args.sort, args.reverse)
    total = {k: sum(r.fig[k] or 0 for r in rows) if k not in figs.unknown else None for k in ("rss", "pss", "uss",
                                                                                              "swap")}
    if args.limit:
        rows = rows[: args.limit]
    return RowsView(SCHEMA, COLS, [{"path": r.key["path"], "procs": r.nprocs, **r.fig} for r in rows],
                    {**total, "path": ""}, extra={"skipped": scan.skipped, "known": scan.known.to_dict()})


class Libs(Command):
    """Per mapping (library, file, [heap], [anon]...) across all processes: RSS, PSS, USS, processes."""

    name = "libs"
    order = 21

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--sort", default="pss", choices=("rss", "pss", "uss", "swap", "procs", "path"),
                       help="sort by this column (sizes descending; default pss)")
        p.add_argument("-r", "--reverse", action="store_true", help="reverse the sort order")
        p.add_argument("-n", "--limit", type=positive, default=0, metavar="N", help="show the first N rows only")
        p.add_argument("--path", metavar="REGEX", help="only mappings whose path matches")
        add_filter_options(p)
        add_chart_options(p)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        try:
            re.compile(args.path or "")
        except re.error as e:
            raise UsageError(f"--path: not a regular expression: {args.path!r} ({e})") from None
        check_charts(args)
        scan = load_or_scan(args, user_namer())
        report_scan(scan, args, err)
        view = libs_view(scan, args)
        write(view, out, args.format, args.unit)
        charts(args, [(str(r["path"]), r["pss"] or 0) for r in view.rows], "PSS by mapping")
        return asked_exit(args, scan.skipped)
