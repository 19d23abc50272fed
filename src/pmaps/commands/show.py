"""pmaps PID...: the page-range view of the 2007 RFC, its physical and full-flag variants, --summary."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from ..errors import PmapsError, UsageError
from ..kernel import procfs
from . import Command, add_output_options
from ._common import EXIT_SOME_FAILED, is_pid_text, parse_pid

# numpy and the layers that use it are imported by run(), once the first process's maps is being
# read ahead (procfs.read_ahead): the read and the imports overlap.
if TYPE_CHECKING:
    from ..collector import Options
    from ..kernel import caps as capsmod
    from ..kernel.maps import VmaTable
    from ..model import PageSource
    from ..render import View
    from ..render.folios import ProcessFolios
    from ..render.summary import ProcessSummary

BATCH_VMAS = 8192  # about as many VMAs per batch of pages read, when VMAs are small (batch_pages)
MIN_BATCH_PAGES = 1 << 14

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
    from ..kernel.kpage import KPF_BITS
    from ..kernel.pagemap import PM_BITS

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
        p.add_argument("--cgroup", action="store_true",
                       help="add each range's memory cgroup, the one its pages are charged to (kpagecgroup; root); "
                            "ranges then also break where the cgroup changes")
        p.add_argument("--summary", action="store_true", help="a footprint table per VMA with process totals")
        p.add_argument("--folios", action="store_true",
                       help="per VMA, bytes by folio size (4K, mTHP sizes, PMD THP), hugetlb, KSM, zero page, and "
                            "the unmapped part of partly mapped large folios (root)")
        p.add_argument("--no-scan", action="store_true",
                       help="read pagemap in chunks instead of PAGEMAP_SCAN (also: PMAPS_NO_SCAN=1)")
        p.add_argument("--include-self", action="store_true",
                       help="keep pmaps' own mappings in MAPCOUNT and PSS (the raw kernel view; by default they "
                            "are taken out, so the figures are what the kernel shows when pmaps is not running)")
        p.add_argument("--legend", action="store_true", help="print what every flag letter means and exit")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        if args.legend:
            out.write(legend())
            return 0
        if not args.pids:
            raise UsageError("give at least one PID (or --legend)")
        srcs = [_source_arg(p) for p in args.pids]
        if isinstance(srcs[0], int):
            procfs.read_ahead(srcs[0], "maps")
        from ..collector import Options
        from ..kernel import caps as capsmod
        from ..render import write
        from ..render.notes import missing_notes
        from ..render.pmaps import PageRangesView, ViewOptions

        opts = Options(scan=False if args.no_scan else None, include_self=args.include_self, cgroup=args.cgroup)
        names: dict[int, str] | None = None
        if args.cgroup:
            from ..kernel.cgroup import find_memory_hierarchy, memcg_dirs

            h = find_memory_hierarchy()
            names = memcg_dirs(h) if h is not None else {}
        caps = capsmod.probe()
        failures: list[PmapsError] = []
        notes: list[str] = []

        def failed(e: PmapsError) -> None:
            failures.append(e)
            err.write(f"pmaps: {e}\n")

        last = [-1]

        def progress(done_pages: int, total: int) -> None:
            # The pagemap fallback through a huge VMA: a line every 10% (no PAGEMAP_SCAN, --no-scan).
            pct = 100 * done_pages // max(total, 1)
            if not args.quiet and pct // 10 != last[0]:
                last[0] = pct // 10
                err.write(f"pmaps: reading pagemap without PAGEMAP_SCAN: {pct}% of {total} pages\n")
                err.flush()

        def done(src: PageSource) -> None:
            notes.extend(n for n in missing_notes(src.known, pfn=args.pfn) if n not in notes)

        view: View
        if args.folios:
            from ..render.folios import FoliosView

            folios = []
            for src in _opened(srcs, opts, caps, failed, progress):
                try:
                    folios.append(folio_summary(src, caps))
                except PmapsError as e:
                    failed(e)
                    continue
                done(src)
            view = FoliosView(folios)
        elif args.summary:
            summaries = []
            for src in _opened(srcs, opts, caps, failed, progress):
                try:
                    summaries.append(summarize(src))
                except PmapsError as e:
                    failed(e)
                    continue
                done(src)
            from ..render.summary import SummaryView

            view = SummaryView(summaries)
        else:
            view = PageRangesView(_opened(srcs, opts, caps, failed, progress),
                                  ViewOptions(full=args.flags == "all", with_pfn=args.pfn, swap=args.swap,
                                              cgroup_names=names),
                                  header=len(srcs) > 1, on_error=failed, on_done=done)
        write(view, out, args.format, args.unit)
        if notes and not args.quiet and args.format == "text" and len(failures) < len(srcs):
            err.write("pmaps: '?' marks what cannot be known here: " + "; ".join(notes) + "\n")
        if not failures:
            return 0
        if len(srcs) == 1:
            return failures[0].exit_code
        return EXIT_SOME_FAILED if len(failures) < len(srcs) else failures[0].exit_code


def summarize(src: PageSource) -> ProcessSummary:
    """Per-VMA footprints of a source, through the footprint engine."""
    from ..analysis.footprint import vma_columns
    from ..collector import Process
    from ..collector.swap import machine_swap_refs
    from ..model.snapshot import vma_table
    from ..render.summary import KEYS, ProcessSummary

    # A live process: SwapPss divides by the swap entries' holders, read from every process.
    refs = machine_swap_refs if isinstance(src, Process) else None
    raw, unknown = vma_columns(src, KEYS, swap_refs=refs)
    return ProcessSummary.build(src.pid, src.comm, vma_table(src), raw, unknown)


def folio_summary(src: PageSource, caps: capsmod.Caps) -> ProcessFolios:
    """Folio sizes per VMA: the pages, then kpageflags of the blocks around their large folios."""
    import numpy as np

    from ..analysis.folios import blocks_from_pages, folio_of, folio_rows
    from ..collector import Process
    from ..collector.folios import read_folio_blocks
    from ..errors import AccessDenied, Unsupported
    from ..kernel import caps as capsmod
    from ..model import Snapshot
    from ..render.folios import ProcessFolios

    snap = src.snapshot() if isinstance(src, Process) else src
    assert isinstance(snap, Snapshot)
    if not (snap.known.flags and snap.known.pfn):
        if not isinstance(src, Process):  # a file saved without them: root now cannot add them
            raise Unsupported("--folios needs kpageflags and PFNs: this snapshot has none (saved without root)")
        raise AccessDenied("--folios needs kpageflags and PFNs: run as root (CAP_SYS_ADMIN)", snap.pid)
    p = snap.pages
    pres = p.present
    head = np.zeros(len(p), dtype=np.uint64)
    size = np.zeros(len(p), dtype=np.int64)
    if isinstance(src, Process):
        starts, blocks = read_folio_blocks(p)
    else:  # a snapshot file: only its own pages' flags are known; folios are judged from those
        starts, blocks = blocks_from_pages(p)
    head[pres], size[pres] = folio_of(p.pfn[pres], starts, blocks)
    rows = folio_rows(snap.vmas, snap.bounds(), p, snap.known, head, size)
    return ProcessFolios.build(snap.pid, snap.comm, snap.vmas, rows, capsmod.average_mapcounts())


def batch_pages(table: VmaTable, pages: int) -> int:
    """Pages per batch read for a view of this process: at most `pages`, and about BATCH_VMAS VMAs'
    worth (by their mean size) but at least MIN_BATCH_PAGES. Writing a view costs per VMA, not per
    page: with many small VMAs, smaller batches let the two reader threads read the next ones while
    this one writes (65,531 VMAs of 2 pages: batches of 16 Ki pages, ~10% faster than of 128 Ki;
    smaller ones were not faster)."""
    from ..kernel.maps import PAGE_SIZE

    if not len(table):
        return pages
    mean = int((table.end - table.start).sum()) / len(table) / PAGE_SIZE
    return max(min(pages, int(BATCH_VMAS * mean)), min(pages, MIN_BATCH_PAGES))


def _source_arg(arg: str) -> int | str:
    """A PID, or a snapshot file's path; UsageError naming both when it is neither.

    Digits are always a PID: `pmaps 123` must not read a file named 123 that happens to be in
    the current directory (write ./123 for the file). Any other existing name is a file, and
    the loader says what is wrong with it (a FIFO, a device, a looping symlink).
    """
    if is_pid_text(arg):
        return parse_pid(arg)
    if os.path.isdir(arg):
        raise UsageError(f"{arg} is a directory, not a snapshot file (see 'pmaps save')")
    if os.path.lexists(arg):
        return arg
    try:
        return parse_pid(arg)
    except UsageError:
        raise UsageError(f"not a process ID, nor an existing snapshot file: {arg[:60]!r}") from None


def _opened(srcs: list[int | str], opts: Options, caps: capsmod.Caps, failed: Callable[[PmapsError], None],
            progress: Callable[[int, int], None] | None = None) -> Iterator[PageSource]:
    """Each source opened in turn (a live process is closed after its turn); failures reported."""
    from ..collector import Process

    for src in srcs:
        try:
            if isinstance(src, str):
                from ..store import load

                yield load(src)
                continue
            with Process(src, opts, caps) as proc:
                proc.opts = replace(proc.opts, chunk_pages=batch_pages(proc.table, proc.opts.chunk_pages))
                proc.progress = progress
                yield proc
        except PmapsError as e:
            failed(e)
