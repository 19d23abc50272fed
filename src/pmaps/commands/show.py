"""pmaps PID...: the page-range view of the 2007 RFC, its physical and full-flag variants, --summary."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from ..collect import Options, Process, missing_notes, parse_pid
from ..errors import PmapsError, UsageError
from ..kernel import caps as capsmod
from ..kernel.kpage import KPF_BITS
from ..kernel.pagemap import PM_BITS
from ..render.pmaps import RangeWriter, ViewOptions
from ..model import Snapshot
from . import Command, add_output_options

if TYPE_CHECKING:
    from ..render.summary import SummaryView

EXIT_SOME_FAILED = 7

LEGEND_RFC = """\
RFC flags (default view), '_' clear, '?' unknown on this kernel or with these privileges:
  Y  young         the pte young bit, via idle page tracking (not idle => young); '?' without it
  R  referenced    kpageflags REFERENCED
  A  active        kpageflags ACTIVE
  U  uptodate      kpageflags UPTODATE
  P  pte dirty     pagemap soft-dirty (bit 55), the nearest exported signal; '?' without
                   CONFIG_MEM_SOFT_DIRTY
  D  dirty         kpageflags DIRTY
  W  writeback     kpageflags WRITEBACK
  swapped          (with --swap) a range of swapped-out pages; MAPCOUNT is then '-'
"""


def legend() -> str:
    lines = [LEGEND_RFC, "--flags=all: kpageflags letters (bits 0-26, as page-types prints them), ':', pagemap bits:"]
    lines += [f"  {ch}  {name:<14} kpageflags bit {b}" for b, name, ch in KPF_BITS]
    lines += [f"  {ch}  {name:<14} pagemap bit {b}" for b, name, ch in PM_BITS]
    return "\n".join(lines) + "\n"


class Show(Command):
    """Show processes' memory maps page by page: each VMA, then INDEX COUNT FLAGS MAPCOUNT ranges.

    Only resident pages are listed, in maximal ranges of consecutive pages in the same state.
    Without root, PFNs, page flags and map counts cannot be read: they show as '?', and one
    line on stderr says so.
    """

    name = "show"
    order = 0

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pids", nargs="*", metavar="PID", help="process IDs, or snapshot files from 'pmaps save'")
        p.add_argument("--flags", choices=("rfc", "all"), default="rfc",
                       help="rfc: the 2007 letters YRAUPDW (R A U D W from kpageflags, Y from idle page "
                            "tracking, P from pagemap soft-dirty; '?' where unknown); all: every kpageflags "
                            "and pagemap bit. --legend tells each letter's source")
        p.add_argument("--pfn", action="store_true",
                       help="physical view: add each range's first PFN (hex); ranges then are physically contiguous")
        p.add_argument("--swap", action="store_true", help="also show swapped-out ranges")
        p.add_argument("--summary", action="store_true", help="a footprint table per VMA with process totals")
        p.add_argument("--no-scan", action="store_true",
                       help="read pagemap in chunks instead of PAGEMAP_SCAN (also: PMAPS_NO_SCAN=1)")
        p.add_argument("--legend", action="store_true", help="print what every flag letter means and exit")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        if args.legend:
            out.write(legend())
            return 0
        if not args.pids:
            raise UsageError("give at least one PID (or --legend)")
        if args.format == "csv" and not args.summary:
            raise UsageError("--format csv goes with --summary")
        pids = [_source_arg(p) for p in args.pids]
        opts = Options(scan=False if args.no_scan else None)
        caps = capsmod.probe()
        view = ViewOptions(full=args.flags == "all", with_pfn=args.pfn, swap=args.swap)
        writer = RangeWriter(out, args.format, view)
        summaries: list[SummaryView] = []
        failures: list[PmapsError] = []
        notes: list[str] = []
        if not args.summary:
            writer.begin()
        for pid in pids:
            try:
                with _open_source(pid, opts, caps) as proc:
                    if args.summary:
                        summaries.append(self._summary(proc))
                    elif args.format in ("text", "ndjson"):
                        # Streamed: text line by line, NDJSON a whole VMA line at a time.
                        writer.process(proc.pid, proc.comm, proc.vmas, proc.chunks(), lambda: proc.known,
                                       header=len(pids) > 1)
                    else:
                        # A JSON document is built per process, then written whole: a process that
                        # exits mid-scan must not leave a half-written document behind.
                        buf = io.StringIO()
                        sub = RangeWriter(buf, args.format, view)
                        sub.first_process = writer.first_process
                        sub.process(proc.pid, proc.comm, proc.vmas, proc.chunks(), lambda: proc.known, header=False)
                        out.write(buf.getvalue())
                        writer.first_process = False
                    for n in missing_notes(proc.known, pfn=args.pfn):
                        if n not in notes:
                            notes.append(n)
            except PmapsError as e:
                failures.append(e)
                err.write(f"pmaps: {e}\n")
        if args.summary:
            from ..render.summary import write_summary

            write_summary(out, summaries, args.format, args.unit)
        else:
            writer.end()
        if notes and not args.quiet and args.format == "text" and len(failures) < len(pids):
            err.write("pmaps: '?' marks what cannot be known here: " + "; ".join(notes) + "\n")
        if not failures:
            return 0
        if len(pids) == 1:
            return failures[0].exit_code
        return EXIT_SOME_FAILED if len(failures) < len(pids) else failures[0].exit_code

    @staticmethod
    def _summary(proc: Process | SnapshotSource) -> SummaryView:
        from ..analysis.footprint import Footprint, footprint
        from ..render.summary import SummaryView

        fps = [Footprint() for _ in proc.vmas]
        for i, pages in proc.chunks():
            fps[i] = fps[i] + footprint(pages, proc.known)
        if not proc.known.count:
            for f in fps:
                f.pss_fixed = None
        if not proc.known.flags:
            for f in fps:
                f.dirty = f.referenced = None
        return SummaryView.build(proc.pid, proc.comm, proc.vmas, fps)


class SnapshotSource:
    """A saved snapshot, shaped like an open Process for the writers."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.pid, self.comm, self.vmas, self.known = snap.pid, snap.comm, snap.vmas, snap.known

    def chunks(self) -> Iterator[tuple[int, object]]:
        from ..store import snapshot_chunks

        return snapshot_chunks(self.snap)  # type: ignore[return-value]


def _source_arg(arg: str) -> int | str:
    """A snapshot file's path, or a PID; UsageError naming both when it is neither."""
    if os.path.isfile(arg):
        return arg
    if os.path.isdir(arg):
        raise UsageError(f"{arg} is a directory, not a snapshot file (see 'pmaps save')")
    try:
        return parse_pid(arg)
    except UsageError:
        raise UsageError(f"not a process ID, nor an existing snapshot file: {arg!r}") from None


@contextlib.contextmanager
def _open_source(src: int | str, opts: Options, caps: capsmod.Caps) -> Iterator[Process | SnapshotSource]:
    if isinstance(src, str):
        from ..store import load

        yield SnapshotSource(load(src))
        return
    with Process(src, opts, caps) as proc:
        yield proc
