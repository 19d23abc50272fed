"""What several commands share: PID arguments, process filters, the scan of top/libs, charts."""
from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..errors import AccessDenied, KernelThread, NoSuchProcess, PmapsError, ProcessGone, UsageError

if TYPE_CHECKING:  # imported where used: `pmaps PID` needs parse_pid alone before its reads begin
    from ..kernel.status import Ident
    from ..model import SystemScan


def is_pid_text(text: str) -> bool:
    """Whether an argument is a PID rather than a file: ASCII digits always are (`pmaps 123` never
    reads a file named 123 in the current directory; ./123 is the file)."""
    return text.isascii() and text.isdigit()


def parse_pid(text: str) -> int:
    """A PID as typed: ASCII digits only (int() would also take ' 12', '+1' or Arabic digits)."""
    if not is_pid_text(text) or len(text) > 10 or int(text) <= 0:
        raise UsageError(f"not a process ID: {text[:40]!r}")
    return int(text)


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


def add_force_option(p: argparse.ArgumentParser) -> None:
    """--force, once per parser (charts and --save-scan share it)."""
    if not any("--force" in a.option_strings for a in p._actions):
        p.add_argument("--force", action="store_true",
                       help="replace an existing regular output file (never a symlink, device or directory)")


def add_chart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pie", metavar="FILE.png", help="also draw a pie chart of PSS (matplotlib)")
    p.add_argument("--bar", metavar="FILE.png", help="also draw a bar chart of PSS (matplotlib)")
    add_force_option(p)


def check_charts(args: argparse.Namespace) -> None:
    """Refuse a chart path before any work is done: not .png (the picture is always PNG), both
    charts to one file, or a path the write would refuse at the end (store.files.check_output)."""
    from ..store.files import check_output

    paths = [(kind, getattr(args, kind, None)) for kind in ("pie", "bar")]
    for kind, path in paths:
        if path is None:
            continue
        if not path.lower().endswith(".png"):
            raise UsageError(f"--{kind} writes a PNG: the file name must end in .png ({path!r})")
        check_output(path, args.force)
    if paths[0][1] and paths[1][1] and os.path.abspath(paths[0][1]) == os.path.abspath(paths[1][1]):
        raise UsageError(f"--pie and --bar write two pictures: give two file names ({paths[0][1]!r})")


def charts(args: argparse.Namespace, items: list[tuple[str, int]], title: str) -> None:
    from ..render.charts import chart_png

    for kind in ("pie", "bar"):
        path = getattr(args, kind, None)
        if path:
            from ..store import save_bytes

            # 0600 like every file pmaps writes: the labels are process names and paths.
            save_bytes(path, chart_png(kind, items, title), force=args.force)


EXIT_SOME_FAILED = 7  # several PIDs given, some of them failed (the others shown)
# A PID asked for with -p and not counted, by reason: the error `pmaps PID` would raise.
_REASON_ERROR: dict[str, type[PmapsError]] = {"missing": NoSuchProcess, "exited": ProcessGone,
                                             "denied": AccessDenied, "kernel": KernelThread}


def asked_exit(args: argparse.Namespace, skipped: dict[str, list[int]]) -> int:
    """0, or for PIDs asked for with -p and not counted (their line is on stderr already): 7 when
    some others were, else the first one's code (3 no such process, 4 denied, 5 a kernel thread),
    as `pmaps PID PID` exits. A whole-machine scan skips what it cannot read: 0."""
    if not getattr(args, "pid", None) or args.load_scan:
        return 0
    asked = set(parse_pids(args.pid))
    failed = [(reason, pid) for reason, pids in skipped.items() for pid in pids if pid in asked]
    if not failed:
        return 0
    if len({p for _, p in failed}) < len(asked):
        return EXIT_SOME_FAILED
    return _REASON_ERROR.get(failed[0][0], PmapsError).exit_code


def report_scan(scan: SystemScan, args: argparse.Namespace, err: TextIO) -> None:
    """The one line about processes not counted, and what these privileges cannot tell."""
    from ..render.notes import skipped_line

    line = skipped_line(scan)
    if line and not args.quiet:
        err.write(f"pmaps: {line}\n")
    if not args.quiet and not scan.known.count and (scan.procs or any(r.sums is not None for r in scan.rollups)):
        err.write("pmaps: PSS, KSM and hugetlb figures need root (kpageflags, kpagecount): shown as '?'\n")


def parse_pids(text: str) -> list[int]:
    words = [x for x in re.split(r"[,\s]+", text.strip()) if x]
    if not words:
        raise UsageError(f"not a list of PIDs: {text!r}")
    try:
        return [parse_pid(x) for x in words]
    except UsageError:
        raise UsageError(f"not a list of PIDs: {text[:60]!r}") from None


def selector(args: argparse.Namespace, user_of: Callable[[int], str]) -> Callable[[Ident], bool] | None:
    """The filter of -u, -c and --cgroup, or None. A user or cgroup that does not exist is a usage
    error, not an empty table (a typo would look like 'no such processes')."""
    users = {w for w in re.split(r"[,\s]+", args.user) if w} if args.user else None
    if users is not None:
        import pwd

        for w in sorted(users):
            if not w.isdigit():
                try:
                    pwd.getpwnam(w)
                except KeyError:
                    raise UsageError(f"-u: no such user {w!r}") from None
    try:
        rx = re.compile(args.command) if args.command else None
    except re.error as err:
        raise UsageError(f"-c: not a regular expression: {args.command!r} ({err})") from None
    cg = args.cgroup
    if cg is not None:
        from ..kernel.cgroup import memcg_exists

        if memcg_exists(cg) is False:
            raise UsageError(f"--cgroup: no memory cgroup {cg!r}")
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
    p.add_argument("--include-self", action="store_true",
                   help="keep pmaps' own mappings in map counts and PSS (the raw kernel view)")
    p.add_argument("--save-scan", metavar="FILE", help="also save the raw scan (.npz, PFNs included, 0600)")
    p.add_argument("--load-scan", metavar="FILE", help=argparse.SUPPRESS)  # golden tests, bug reports
    add_force_option(p)


def scan_from_args(args: argparse.Namespace, user_of: Callable[[int], str]) -> SystemScan:
    """The scan the filter options ask for; page by page unless the command sets args.rollup_max
    (top: processes up to that RSS from their smaps_rollup)."""
    from ..analysis.system import process_sums
    from ..collector import scan_system

    pids = parse_pids(args.pid) if args.pid else None
    return scan_system(pids, selector(args, user_of), scan=False if args.no_scan else None,
                       include_self=args.include_self, rollup_max=getattr(args, "rollup_max", None),
                       reduce=process_sums)


def load_or_scan(args: argparse.Namespace, user_of: Callable[[int], str]) -> SystemScan:
    """The scan: read from --load-scan, or made now (and kept with --save-scan)."""
    if args.load_scan:
        from ..store import scan as scanfile

        return scanfile.load(args.load_scan)
    scan = scan_from_args(args, user_of)
    if args.save_scan:
        from ..collector.charges import attach_cgroups
        from ..store import scan as scanfile

        attach_cgroups(scan)  # kept in the file when it can be read: --group-by cgroup of a loaded scan
        scanfile.save(scan, args.save_scan, force=args.force)
    return scan


def add_selector_options(p: argparse.ArgumentParser, *, at: bool) -> None:
    """--host/--pid/--start-ticks choose a process of a dataset; --at (diff) or --since/--until
    (heatmap) its samples."""
    g = p.add_argument_group("a dataset ROOT (record --dataset, docs/dataset.md)")
    g.add_argument("--host", metavar="H", help="the host (needed when the dataset holds several)")
    g.add_argument("--pid", metavar="PID", help="the process (needed when the host has several)")
    g.add_argument("--start-ticks", type=int, metavar="T",
                   help="its start time in clock ticks since boot (when the PID names several processes)")
    if at:
        g.add_argument("--at", action="append", metavar="WHEN",
                       help="a sample: its index among the process's samples (0 first, -1 last) or a UTC time "
                            "(YYYY-MM-DDTHH:MM:SS[.ffffff][Z]: the last sample at or before it); twice for A and B "
                            "(default: the last two samples)")
    else:
        g.add_argument("--since", metavar="TIME", help="only samples at or after this UTC time")
        g.add_argument("--until", metavar="TIME", help="only samples at or before this UTC time")


SELECTORS = ("host", "pid", "start_ticks", "at", "since", "until")


def selector_given(args: argparse.Namespace) -> str | None:
    """The first dataset selector on the command line, as an option name (None: none given)."""
    for k in SELECTORS:
        if getattr(args, k, None) is not None:
            return "--" + k.replace("_", "-")
    return None
