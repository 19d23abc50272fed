"""pmaps top: every process, one row each (smem/procrank), from one scan of the whole machine."""
from __future__ import annotations

import argparse
import io
import re
import time
from collections.abc import Callable
from typing import TextIO

from ..analysis import system as S
from .. import sysscan
from ..errors import PmapsError, UsageError
from ..kernel.system import Ident
from ..render.charts import draw
from ..render.rows import Col, RowsView, write_rows
from ..render.units import fmt_bytes
from ..store import write_atomic
from ..sysscan import SystemScan, scan_system
from . import Command, add_output_options, positive, seconds

SCHEMA = "pmaps-top/1"
PROC_COLS = [Col("pid", "PID"), Col("user", "USER", left=True), Col("comm", "COMMAND", left=True)]
FIG_COLS = [Col("rss", "RSS", True), Col("pss", "PSS", True), Col("uss", "USS", True), Col("shared", "SHARED", True),
            Col("swap", "SWAP", True), Col("swap_pss", "SWAPPSS", True), Col("anon_thp", "ANONTHP", True)]
MORE_COLS = [Col("ksm", "KSM", True), Col("shared_hugetlb", "SHHUGETLB", True),
             Col("private_hugetlb", "PRHUGETLB", True)]
GROUP_NAMES = {"program": "PROGRAM", "user": "USER", "cgroup": "CGROUP"}


def user_namer() -> Callable[[int], str]:
    """uid -> login name (number when unknown), cached."""
    import pwd

    cache: dict[int, str] = {}

    def name(uid: int) -> str:
        if uid not in cache:
            try:
                cache[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                cache[uid] = str(uid)
        return cache[uid]

    return name


def add_chart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pie", metavar="FILE.png", help="also draw a pie chart of PSS (matplotlib)")
    p.add_argument("--bar", metavar="FILE.png", help="also draw a bar chart of PSS (matplotlib)")


def check_charts(args: argparse.Namespace) -> None:
    """Refuse a chart path that is not .png before any work is done (the picture is always PNG)."""
    for kind in ("pie", "bar"):
        path = getattr(args, kind, None)
        if path is not None and not path.lower().endswith(".png"):
            raise UsageError(f"--{kind} writes a PNG: the file name must end in .png ({path!r})")


def charts(args: argparse.Namespace, items: list[tuple[str, int]], title: str) -> None:
    for kind in ("pie", "bar"):
        path = getattr(args, kind, None)
        if path:
            draw(path, kind, items, title)


def report_scan(scan: SystemScan, args: argparse.Namespace, err: TextIO) -> None:
    """The one line about processes not counted, and what these privileges cannot tell."""
    line = scan.skipped_line()
    if line:
        err.write(f"pmaps: {line}\n")
    if not args.quiet and not scan.known.count:
        err.write("pmaps: PSS, KSM and hugetlb figures need root (kpageflags, kpagecount): shown as '?'\n")


def parse_pids(text: str) -> list[int]:
    try:
        pids = [int(x) for x in re.split(r"[,\s]+", text.strip()) if x]
    except ValueError:
        raise UsageError(f"not a list of PIDs: {text!r}") from None
    if not pids or min(pids) <= 0:
        raise UsageError(f"not a list of PIDs: {text!r}")
    return pids


def selector(args: argparse.Namespace, user_of: Callable[[int], str]) -> Callable[[Ident], bool] | None:
    users = set(re.split(r"[,\s]+", args.user)) if args.user else None
    try:
        rx = re.compile(args.command) if args.command else None
    except re.error as err:
        raise UsageError(f"-c: not a regular expression: {args.command!r} ({err})") from None
    cg = args.cgroup
    if users is None and rx is None and cg is None:
        return None

    def ok(ident: Ident) -> bool:
        if users is not None and str(ident.uid) not in users and user_of(ident.uid) not in users:
            return False
        if rx is not None and not rx.search(ident.comm):
            return False
        return cg is None or ident.cgroup == cg or ident.cgroup.startswith(cg.rstrip("/") + "/")

    return ok


def add_filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-u", "--user", help="only these users (names or uids, comma-separated)")
    p.add_argument("-c", "--command", metavar="REGEX", help="only processes whose command (comm) matches")
    p.add_argument("-p", "--pid", metavar="PIDS", help="only these PIDs (comma-separated)")
    p.add_argument("--cgroup", metavar="PATH", help="only processes in this cgroup or below it")
    p.add_argument("--no-scan", action="store_true", help="read pagemap instead of PAGEMAP_SCAN")
    p.add_argument("--save-scan", metavar="FILE", help="also save the raw scan (.npz, PFNs included, 0600)")
    p.add_argument("--load-scan", metavar="FILE", help=argparse.SUPPRESS)  # golden tests, bug reports


def scan_from_args(args: argparse.Namespace, user_of: Callable[[int], str]) -> SystemScan:
    pids = parse_pids(args.pid) if args.pid else None
    return scan_system(pids, selector(args, user_of), scan=False if args.no_scan else None)


def load_or_scan(args: argparse.Namespace, user_of: Callable[[int], str]) -> SystemScan:
    """The scan: read from --load-scan, or made now (and kept with --save-scan)."""
    if args.load_scan:
        try:
            with open(args.load_scan, "rb") as f:
                return sysscan.loads(f.read(), args.load_scan)
        except OSError as err:
            raise PmapsError(f"cannot read {args.load_scan}: {err.strerror}", path=args.load_scan) from err
    scan = scan_from_args(args, user_of)
    if args.save_scan:
        try:
            write_atomic(args.save_scan, sysscan.dumps(scan))
        except OSError as err:
            raise PmapsError(f"cannot write {args.save_scan}: {err.strerror}", path=args.save_scan) from err
    return scan


def top_view(scan: SystemScan, args: argparse.Namespace, user_of: Callable[[int], str]) -> RowsView:
    """Rows (per process, or per group), the totals row and the meminfo reconciliation."""
    reps = S.mm_reps(scan)
    figs = S.page_figures(scan, reps)
    procs = S.process_rows(scan, figs, reps, user_of)
    total = S.total_row(procs, scan, figs, reps)
    figcols = FIG_COLS + (MORE_COLS if args.all else [])
    if args.group_by:
        rows = S.group_rows(scan, figs, reps, args.group_by, user_of)
        cols = [Col(args.group_by, GROUP_NAMES[args.group_by], left=True), Col("procs", "PROCS"), *figcols]
        sort = args.sort if args.sort not in ("pid", "comm", "user") else "procs"
    else:
        rows, cols, sort = procs, PROC_COLS + figcols, args.sort
    rows = S.sort_rows(rows, sort, args.reverse)
    if args.limit:
        rows = rows[: args.limit]
    view = RowsView(SCHEMA, cols, [{**r.as_dict(), **({"procs": r.nprocs} if args.group_by else {})} for r in rows],
                    {**total, **({"procs": len(procs)} if args.group_by else {})})
    view.extra = {"skipped": scan.skipped, "known": scan.known.to_dict(), "group_by": args.group_by}
    rec = S.reconcile(scan, total)
    if rec is not None:
        view.extra["reconcile"] = rec
        view.notes.append(f"# PSS of all processes {fmt_bytes(rec['pss_total'])} + pmaps itself "
                          f"{fmt_bytes(rec['self_pss'])}; /proc/meminfo AnonPages+Mapped "
                          f"{fmt_bytes(rec['meminfo_anon_plus_mapped'])} (difference {fmt_bytes(rec['difference'])}: "
                          "pages mapped only outside this scan, and churn)")
    return view


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
                       help="one row per program (comm), user or cgroup; an mm shared by pids counts once")
        p.add_argument("--all", action="store_true", help="also the KSM and hugetlb columns")
        p.add_argument("--watch", type=seconds, metavar="S", help="refresh every S seconds (Ctrl-C to stop)")
        p.add_argument("--iterations", type=int, default=0, help=argparse.SUPPRESS)
        add_filter_options(p)
        add_chart_options(p)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        user_of = user_namer()
        check_charts(args)
        if args.watch is not None:
            return self._watch(args, out, err, user_of)
        scan = load_or_scan(args, user_of)
        report_scan(scan, args, err)
        view = top_view(scan, args, user_of)
        write_rows(out, view, args.format, args.unit)
        key = args.group_by or "comm"
        # One slice per mm: a CLONE_VM sibling's row repeats its mm's figures.
        charts(args, [(f"{r[key]}" + ("" if args.group_by else f" [{r['pid']}]"), r["pss"] or 0)  # type: ignore[misc]
                      for r in view.rows if args.group_by or r["mm"] == r["pid"]], "PSS by " + (args.group_by or "process"))
        return 0

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
                        write_rows(buf, top_view(scan_from_args(args, user_of), args, user_of), "text", args.unit)
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
                    write_rows(out, top_view(scan, args, user_of), args.format, args.unit)
                    out.flush()
                    n += 1
                    if args.iterations and n >= args.iterations:
                        break
                    time.sleep(args.watch)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends: not an error
        return 0
