"""pmaps phys: the whole machine's physical pages grouped by kpageflags (page-types without -p)."""
from __future__ import annotations

import argparse
from typing import TextIO

from ..analysis import phys as P
from ..errors import UsageError
from ..kernel.kpage import iter_kpageflags
from ..numeric import PAGE_SIZE
from ..render import write
from ..render.rows import Col, RowsView
from . import Command, add_output_options
from ._common import add_chart_options, charts, check_charts

SCHEMA = "pmaps-phys/1"
TEXT_ONLY = ("names_text", "pfn_hex")


def _extra(s: P.PhysSummary) -> dict[str, int]:
    return {"scanned_pfns": s.scanned, "excluded_pfns": s.excluded}


def group_view(s: P.PhysSummary, raw: bool, long: bool, sort: str) -> RowsView:
    items = sorted(s.groups.items(), key=(lambda kv: -kv[1]) if sort == "pages" else (lambda kv: kv[0]))
    rows = [{"flags": f"0x{f:016x}", "names": P.names(f, raw), "symbolic": P.symbolic(f, raw), "pages": n,
             "bytes": n * PAGE_SIZE, "names_text": ",".join(P.names(f, raw)) or "-"} for f, n in items]
    cols = [Col("flags", "FLAGS", left=True), Col("pages", "PAGES"), Col("bytes", "SIZE", True),
            Col("symbolic", "SYMBOLIC", left=True)]
    if long:
        cols.append(Col("names_text", "NAMES", left=True))
    total = {"pages": sum(s.groups.values()), "bytes": sum(s.groups.values()) * PAGE_SIZE}
    return RowsView(SCHEMA, cols, rows, total, extra=_extra(s), machine_drop=TEXT_ONLY)


def range_view(s: P.PhysSummary, raw: bool, long: bool) -> RowsView:
    start, length, flags = s.runs()
    rows = [{"pfn": a, "pfn_hex": f"0x{a:x}", "pages": n, "bytes": n * PAGE_SIZE, "flags": f"0x{f:016x}",
             "symbolic": P.symbolic(f, raw), "names": P.names(f, raw), "names_text": ",".join(P.names(f, raw)) or "-"}
            for a, n, f in zip(start.tolist(), length.tolist(), flags.tolist())]
    cols = [Col("pfn_hex", "PFN", left=True), Col("pages", "PAGES"), Col("symbolic", "SYMBOLIC", left=True)]
    if long:
        cols.append(Col("names_text", "NAMES", left=True))
    return RowsView(SCHEMA.replace("phys", "phys-ranges"), cols, rows, extra=_extra(s),
                    machine_drop=TEXT_ONLY)


class Phys(Command):
    """Physical memory by page flags: every PFN's kpageflags grouped by flag set (page-types). Root.

    -b/--bits takes page-types' expressions (tools/mm/page-types.c): "anon,lru" pages with any of
    the bits; "anon,~lru" anon and not lru; "anon,lru=anon" the same; "=anon,lru" exactly these
    bits. Names may be abbreviated (first match in bit order); several -b must all match.
    """

    name = "phys"
    order = 23

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--ranges", action="store_true", help="list runs of consecutive PFNs with equal flags")
        p.add_argument("--pfn", metavar="A-B", help="only PFNs A..B-1 (hex 0x.. or decimal); default all memory")
        p.add_argument("-b", "--bits", action="append", default=[], metavar="EXPR",
                       help="only pages matching a page-types bits expression (repeatable: AND)")
        p.add_argument("--flags", choices=("letters", "all"), default="letters",
                       help="letters: page-types' symbolic string; all: also the long names")
        p.add_argument("--raw", action="store_true",
                       help="every bit as the kernel reports it (page-types -r): the kernel-internal bits "
                            "32-41, and compound head/tail on THPs and large folios (hidden by default, as "
                            "page-types does)")
        p.add_argument("--sort", choices=("flags", "pages"), default="flags", help="order of the groups")
        p.add_argument("--include-self", action="store_true",
                       help="also count the pages of pmaps' own process (left out by default)")
        add_chart_options(p)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        check_charts(args)
        try:
            filters = [P.parse_bits(b, args.raw) for b in args.bits]
            lo, hi = P.parse_pfn_range(args.pfn) if args.pfn else (0, None)
        except ValueError as e:
            raise UsageError(str(e)) from None
        from ..collector.observer import Observer

        # pmaps' own memory (the pages only it maps) is left out: the machine as it is without pmaps.
        exclude = None if args.include_self else Observer.private_pfns()
        s = P.summarize(iter_kpageflags(lo, hi), filters, args.raw, args.ranges, exclude)
        long = args.flags == "all"
        view = range_view(s, args.raw, long) if args.ranges else group_view(s, args.raw, long, args.sort)
        if s.excluded:
            view.notes.append(f"# {s.excluded} pages of pmaps' own process left out (--include-self counts them)")
        write(view, out, args.format, args.unit)
        if not args.ranges:
            charts(args, [(",".join(P.names(int(r["flags"], 16), args.raw)) or "(none)", int(r["bytes"]))
                          for r in view.rows], "physical memory by page flags")
        return 0
