"""pmaps top: every process, one row each (smem/procrank), from one scan of the whole machine."""
from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import TextIO

from ..analysis import system as S
from ..errors import UsageError
from ..model import SystemScan
from ..render import write
from ..render.rows import Col, RowsView
from ..render.units import fmt_bytes
from . import Command, add_output_options, positive, seconds, size
from ._common import (
    add_chart_options,
    add_filter_options,
    asked_exit,
    charts,
    check_charts,
    load_or_scan,
    report_scan,
    scan_from_args,
    user_namer,
)

SCHEMA = "pmaps-top/1"
PROC_COLS = [Col("pid", "PID"), Col("user", "USER", left=True), Col("comm", "COMMAND", left=True)]
FIG_COLS = [Col("rss", "RSS", True), Col("pss", "PSS", True), Col("uss", "USS", True), Col("shared", "SHARED", True),
            Col("swap", "SWAP", True), Col("swap_pss", "SWAPPSS", True), Col("anon_thp", "ANONTHP", True)]
MORE_COLS = [Col("ksm", "KSM", True), Col("shared_hugetlb", "SHHUGETLB", True),
             Col("private_hugetlb", "PRHUGETLB", True)]
GROUP_NAMES = {"program": "PROGRAM", "user": "USER", "cgroup": "CGROUP"}
ROLLUP_MAX = 2 << 30  # smaps_rollup stalls the target's mmap/munmap ~10 ms per GiB resident (docs/speed.md)


def rollup_max(args: argparse.Namespace) -> int | None:
    """The RSS up to which processes are read from smaps_rollup; None: every process page by page."""
    if args.source == "pages":
        return None
    if args.source == "rollup":
        return 1 << 62
    # auto: page by page when the output needs pages (a saved scan, the pagemap fallback asked
    # for, per-page cgroup charges, the fleet dataset's page-level rows).
    if args.save_scan or args.load_scan or args.no_scan or args.group_by == "cgroup" or args.dataset:
        return None
    return int(args.rollup_max)


def source_note(scan: SystemScan) -> str:
    """Which source each row's figures came from, in one line."""
    n_pages = len(scan.procs) + sum(r.sums is not None for r in scan.rollups)
    n_roll = len(scan.rollups) + len(scan.procs) - n_pages
    if not n_pages and not n_roll:
        return "# figures: no process counted"
    if not n_roll:
        return "# figures: page by page (pagemap, kpageflags, kpagecount)"
    text = f"# figures: {n_roll} process{'es' if n_roll != 1 else ''} from smaps_rollup"
    if n_pages:
        text += f", {n_pages} larger one{'s' if n_pages != 1 else ''} page by page (gentler on them)"
    if scan.observed is not None:
        text += "; pmaps' own share of the pages it maps too taken out page by page"
    return text


def top_view(scan: SystemScan, args: argparse.Namespace, user_of: Callable[[int], str]) -> RowsView:
    """Rows (per process, or per group), the totals row and the meminfo reconciliation."""
    reps = S.mm_reps(scan)
    figs = S.page_figures(scan, reps, vmas=False)  # process and group rows: no VMA's sums
    procs = S.process_rows(scan, figs, reps, user_of)
    procs_dicts = [r.key for r in procs]
    total = S.total_row(procs, scan, figs, reps)
    figcols = FIG_COLS + (MORE_COLS if args.all else [])
    charge_notes: list[str] = []
    if args.group_by:
        rows = S.group_rows(scan, figs, reps, args.group_by, user_of)
        cols = [Col(args.group_by, GROUP_NAMES[args.group_by], left=True), Col("procs", "PROCS"), *figcols]
        sort = args.sort if args.sort not in ("pid", "comm", "user") else "procs"
        if args.group_by == "cgroup":
            rows, total, charge_notes = _with_charges(scan, rows, total, bool(getattr(args, "load_scan", None)))
            cols += CHARGE_COLS
    else:
        rows, cols, sort = procs, PROC_COLS + figcols, args.sort
    rows = S.sort_rows(rows, sort, args.reverse)
    if args.limit:
        rows = rows[: args.limit]
    view = RowsView(SCHEMA, cols, [{**r.as_dict(), **({"procs": r.nprocs} if args.group_by else {})} for r in rows],
                    {**total, **({"procs": len(procs)} if args.group_by else {})})
    view.extra = {"skipped": scan.skipped, "known": scan.known.to_dict(), "group_by": args.group_by,
                  "sources": {S.SOURCE_PAGES: sum(r["source"] == S.SOURCE_PAGES for r in procs_dicts),
                              S.SOURCE_ROLLUP: sum(r["source"] == S.SOURCE_ROLLUP for r in procs_dicts)}}
    view.notes.append(source_note(scan))
    rec = S.reconcile(scan, total)
    if rec is not None:
        view.extra["reconcile"] = rec
        view.notes.append(f"# PSS of all processes {fmt_bytes(rec['pss_total'])} + pmaps itself "
                          f"{fmt_bytes(rec['self_pss'])}; /proc/meminfo AnonPages+Mapped "
                          f"{fmt_bytes(rec['meminfo_anon_plus_mapped'])} (difference {fmt_bytes(rec['difference'])}: "
                          "pages mapped only outside this scan, and churn)")
    view.notes += charge_notes
    return view


CHARGE_COLS = [Col("charged", "CHARGED", True), Col("mapped_elsewhere", "ELSEWHERE", True),
               Col("mapped_from_others", "FROM_OTHERS", True)]
CHARGE_NOTE = ("# CHARGED: pages the scanned processes map that are charged to this memory cgroup (kpagecgroup); "
               "ELSEWHERE: of those, mapped only by other cgroups' processes; FROM_OTHERS: mapped by its processes, "
               "charged to another cgroup")


NO_SAVED_CGROUPS = "this saved scan has no kpagecgroup (saved without root, or by an older pmaps)"


def _with_charges(scan: SystemScan, rows: list[S.Row], total: dict[str, int | None],
                  loaded: bool) -> tuple[list[S.Row], dict[str, int | None], list[str]]:
    """--group-by cgroup: the pages of the scan looked up in kpagecgroup (the reader of `pmaps PID
    --cgroup` and `pmaps cgroups`), added as CHARGE_COLS, with a row for every cgroup charged for
    a mapped page even if none of its processes was scanned."""
    from ..analysis.cgroups import CHARGE_KEYS, group_charges
    from ..collector.charges import attach_cgroups
    from ..numeric import PAGE_SIZE

    if loaded:
        why = None if scan.memcgs is not None else NO_SAVED_CGROUPS
    else:
        why = attach_cgroups(scan)
    kc, names = scan.pages.kcgroup, scan.memcgs
    if why is not None or kc is None or names is None:
        for r in rows:
            r.fig.update(dict.fromkeys(CHARGE_KEYS))
        return rows, {**total, **dict.fromkeys(CHARGE_KEYS)}, [f"# CHARGED, ELSEWHERE, FROM_OTHERS unknown: {why}"]
    ch = group_charges(scan, kc, names)
    have = {str(r.key["cgroup"]) for r in rows}
    zero = dict.fromkeys(S.FIGURES, 0)
    rows = rows + [S.Row({"cgroup": p}, dict(zero), 0) for p in sorted(set(ch.charged) - have)]
    for r in rows:
        r.fig.update({k: v * PAGE_SIZE for k, v in ch.of(str(r.key["cgroup"])).items()})
    return rows, {**total, **{k: v * PAGE_SIZE for k, v in ch.total.items()}}, [CHARGE_NOTE]


class Top(Command):
    """Every process's RSS, PSS, USS, swap, SwapPss, anon THP and shared memory, one row each."""

    name = "top"
    order = 20

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--sort", default="pss", choices=(*S.FIGURES, "pid", "comm", "user", "procs"),
                       help="sort by this column (sizes descending; default pss)")
        p.add_argument("-r", "--reverse", action="store_true", help="reverse the sort order")
        p.add_argument("-n", "--limit", type=positive, default=0, metavar="N", help="show the first N rows only")
        p.add_argument("--group-by", choices=("program", "user", "cgroup"),
                       help="one row per program (comm), user or cgroup (/proc/PID/cgroup); an mm shared by pids "
                            "counts once. cgroup adds, from kpagecgroup (root): CHARGED, the pages the scanned "
                            "processes map that are charged to the cgroup; ELSEWHERE, those only other cgroups' "
                            "processes map; FROM_OTHERS, pages its processes map that are charged to another "
                            "cgroup (rows with PROCS 0: charged, none of its processes scanned)")
        p.add_argument("--all", action="store_true", help="also the KSM and hugetlb columns")
        p.add_argument("--source", choices=("auto", "rollup", "pages"), default="auto",
                       help="where the figures come from: each process's smaps_rollup (fast; the kernel walks "
                       "its page tables, stalling its mmap/munmap ~10 ms per GiB), or its pages (pagemap, "
                       "kpageflags, kpagecount, in short windows). auto (default): smaps_rollup for processes "
                       "up to --rollup-max, pages for bigger ones and whenever the output needs pages")
        p.add_argument("--rollup-max", type=size, default=ROLLUP_MAX, metavar="SIZE",
                       help="largest RSS read from smaps_rollup with --source auto (default 2G)")
        p.add_argument("--watch", "--interval", type=seconds, metavar="S",
                       help="refresh every S seconds (Ctrl-C to stop)")
        p.add_argument("--dataset", metavar="ROOT", help="append every process's rows to the fleet dataset ROOT "
                       "(docs/dataset.md), once or every --interval S")
        p.add_argument("--iterations", type=int, default=0, help=argparse.SUPPRESS)
        add_filter_options(p)
        add_chart_options(p)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        user_of = user_namer()
        check_charts(args)
        if args.source == "rollup" and (args.save_scan or args.load_scan):
            raise UsageError("--save-scan and --load-scan need --source pages (a scan file holds pages)")
        if args.source == "rollup" and args.dataset:
            raise UsageError("--dataset needs page-level reads (its rows are per VMA and per page range): "
                             "drop --source rollup")
        args.rollup_max = rollup_max(args)
        if args.dataset is not None:  # '' too: record_scans refuses it (check_root)
            from ._dataset import record_scans

            return record_scans(args, err, lambda: scan_from_args(args, user_of))
        if args.watch is not None:
            return self._watch(args, out, err, user_of)
        scan = load_or_scan(args, user_of)
        report_scan(scan, args, err)
        view = top_view(scan, args, user_of)
        write(view, out, args.format, args.unit)
        key = args.group_by or "comm"
        # One slice per mm: a CLONE_VM sibling's row repeats its mm's figures.
        charts(args, [(f"{r[key]}" + ("" if args.group_by else f" [{r['pid']}]"), r["pss"] or 0)
                      for r in view.rows if args.group_by or r["mm"] == r["pid"]],
               "PSS by " + (args.group_by or "process"))
        return asked_exit(args, scan.skipped)

    def _watch(self, args: argparse.Namespace, out: TextIO, err: TextIO, user_of: Callable[[int], str]) -> int:
        if args.watch <= 0:
            raise UsageError("--watch needs a positive number of seconds")
        live = args.format == "text" and out.isatty()
        n = 0
        try:
            if live:
                from rich.console import Console
                from rich.live import Live
                from rich.text import Text

                with Live(console=Console(file=out), auto_refresh=False, screen=False) as lv:
                    while True:
                        buf = io.StringIO()
                        write(top_view(scan_from_args(args, user_of), args, user_of), buf, "text", args.unit)
                        lv.update(Text(time.strftime("%H:%M:%S ") + f"every {args.watch:g}s\n" + buf.getvalue()),
                                  refresh=True)
                        n += 1
                        if args.iterations and n >= args.iterations:
                            break
                        time.sleep(args.watch)
            else:
                while True:
                    scan = scan_from_args(args, user_of)
                    if n and args.format == "text":
                        out.write("\n")
                    if args.format == "text":
                        out.write(time.strftime("# %Y-%m-%d %H:%M:%S\n"))
                    write(top_view(scan, args, user_of), out, args.format, args.unit)
                    out.flush()
                    n += 1
                    if args.iterations and n >= args.iterations:
                        break
                    time.sleep(args.watch)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends: not an error
        return 0
