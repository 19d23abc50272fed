"""pmaps files: the page cache of files (vmtouch / fincore): resident, dirty, writeback, evicted."""
from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from ..errors import PmapsError
from . import Command, add_output_options, positive


class Progress:
    """A rich progress line on stderr, shown only once a walk has taken more than a second."""

    def __init__(self, err: TextIO, enabled: bool) -> None:
        self.err, self.enabled = err, enabled
        self.t0 = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def tick(self, n: int) -> None:
        if not self.enabled or n % 256:
            return
        if self.bar is None:
            if time.monotonic() - self.t0 < 1.0:
                return
            from rich.console import Console
            from rich.progress import Progress as RichProgress
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = RichProgress(SpinnerColumn(), TextColumn("{task.completed} paths"), TimeElapsedColumn(),
                                    console=Console(file=self.err), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("files", total=None)
        self.bar.update(self.task, completed=n)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class Files(Command):
    """The page cache of files: size, resident bytes and percent, dirty, writeback, evicted (cachestat)."""

    name = "files"
    order = 25

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("paths", nargs="+", metavar="PATH", help="files, or directories with -r")
        p.add_argument("-r", "--recursive", action="store_true", help="walk directories")
        p.add_argument("-L", "--dereference", action="store_true",
                       help="follow symlinks met in the walk (symlinks given as PATH are always followed)")
        p.add_argument("--xdev", choices=("yes", "no"), default="yes",
                       help="stay on each PATH's filesystem (default yes; --xdev=no crosses mount points)")
        p.add_argument("--top", type=positive, default=0, metavar="N",
                       help="only the N files with the most cached bytes")
        p.add_argument("--owners", action="store_true",
                       help="add the processes that map each file or hold it open (/proc/*/maps, /proc/*/fd): "
                            "PROCS is their number, JSON 'owners' their pids; 0 is cache no process uses")
        p.add_argument("--evict", action="store_true",
                       help="drop the files' clean, unmapped pages from the cache (posix_fadvise DONTNEED; "
                            "needs write access to each file)")
        p.add_argument("--touch", action="store_true", help="read every page of the files into the cache")
        g = p.add_argument_group("the 2007 view of a file's pages (--pages; root for flags, counts and PFNs)")
        g.add_argument("--pages", action="store_true",
                       help="each file's path, then INDEX COUNT FLAGS MAPCOUNT ranges of its resident pages "
                            "(page-types -f): pmaps maps the file read-only and faults in only the resident pages "
                            "(never reads one in), which marks them accessed; MAPCOUNT leaves pmaps' own mapping out")
        g.add_argument("--flags", choices=("rfc", "all"), default="rfc",
                       help="rfc: the RFC's letters (default); all: every kpageflags and pagemap bit")
        g.add_argument("--pfn", action="store_true", help="add each range's first page frame number (hex)")
        g.add_argument("--cgroup", action="store_true",
                       help="add the memory cgroup each range is charged to (kpagecgroup)")
        p.add_argument("--mincore", action="store_true", help=argparse.SUPPRESS)  # force the fallback (tests)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from ..analysis.files import summarize
        from ..kernel import pagecache as pc
        from ..kernel.pagecache import PAGE_SIZE
        from ..render import write
        from ..render.files import FilesView, skipped_line

        if args.evict and args.touch:
            from ..errors import UsageError

            raise UsageError("--evict and --touch exclude each other")
        if args.pages:
            return self._pages(args, out, err)
        if args.pfn or args.cgroup or args.flags != "rfc":
            from ..errors import UsageError

            raise UsageError("--flags, --pfn and --cgroup go with --pages")
        use_cs = not args.mincore and pc.have_cachestat()
        if not use_cs and (args.evict or args.touch):
            raise PmapsError("--evict and --touch report their effect with cachestat(2), which needs Linux 6.5+",
                             path=None)
        if not use_cs and not args.quiet:
            err.write("pmaps: no cachestat(2) here (Linux 6.5+): resident pages from mincore(2); dirty, writeback "
                      "and evicted unknown\n")
        items = pc.scan_files(args.paths, args.recursive, args.dereference, args.xdev == "yes", use_cs)
        if args.evict or args.touch:
            items = self._act(items, args, err)
        bar = Progress(err, err.isatty() and not args.quiet)
        # JSON, NDJSON and CSV of every file are written as the walk goes (not kept), unless the
        # progress bar shares a terminal with them.
        stream = args.format != "text" and not args.top and not (bar.enabled and out.isatty())
        try:
            report = summarize(items, args.top, bar.tick, pc.file_users() if args.owners else None, stream)
            line = skipped_line(report.skipped)
            if report.empty and line:
                raise PmapsError(line)
            if line and not stream:
                err.write(f"pmaps: {line}\n")
            write(FilesView(report, PAGE_SIZE, "cachestat" if use_cs else "mincore"), out, args.format, args.unit)
        finally:
            bar.stop()
        if stream:
            line = skipped_line(report.skipped)
            if line:
                err.write(f"pmaps: {line}\n")
        return 0

    def _act(self, items: Any, args: argparse.Namespace, err: TextIO) -> Any:
        """--evict / --touch each file before it is counted; one line with what it did, in numbers."""
        from ..kernel import pagecache as pc
        from ..kernel.pagecache import PAGE_SIZE
        from ..render.files import safe_path
        from ..render.units import fmt_bytes

        before = after = n = 0
        denied: list[str] = []
        for item in items:
            if isinstance(item, pc.FileStat):
                try:
                    b, a = (pc.evict if args.evict else pc.touch)(item.path)
                except OSError as e:
                    if args.evict and isinstance(e, PermissionError):
                        denied.append(item.path)
                    yield pc.Skipped(item.path, pc.skip_reason(e), str(e))
                    continue
                before, after, n = before + b, after + a, n + 1
                item = pc.file_stat(item.path, True)
            yield item
        if not n:  # nothing acted on: the line of paths not counted says why (one line, not two)
            return
        verb = "evicted" if args.evict else "touched"
        moved = (before - after) if args.evict else (after - before)
        err.write(f"pmaps: {verb} {n} file{'s' if n != 1 else ''}: cached {fmt_bytes(before * PAGE_SIZE, args.unit)}"
                  f" before, {fmt_bytes(after * PAGE_SIZE, args.unit)} after "
                  f"({'-' if args.evict else '+'}{fmt_bytes(moved * PAGE_SIZE, args.unit)})\n")
        if denied:
            err.write(f"pmaps: --evict refused on {len(denied)} file{'s' if len(denied) > 1 else ''} without write "
                      f"access (e.g. {safe_path(denied[0])})\n")

    def _pages(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from ..analysis.files import FilePages, file_pages
        from ..errors import UsageError
        from ..kernel import pagecache as pc
        from ..render import write
        from ..render.filepages import FilePagesView
        from ..render.files import skipped_line
        from ..render.notes import missing_notes

        if args.format not in ("text", "json"):
            raise UsageError("--pages writes text or json")
        if args.evict or args.touch or args.top:
            raise UsageError("--pages does not go with --evict, --touch or --top")
        skipped: dict[str, list[str]] = {}

        def gen() -> Any:
            for item in pc.walk(args.paths, args.recursive, args.dereference, args.xdev == "yes"):
                if isinstance(item, pc.Skipped):
                    skipped.setdefault(item.reason, []).append(item.path)
                    continue
                try:
                    yield file_pages(item, args.cgroup)
                except OSError as e:
                    skipped.setdefault(pc.skip_reason(e), []).append(item)

        view = FilePagesView(gen(), args.flags == "all", args.pfn, args.cgroup)
        write(view, out, args.format, args.unit)
        line = skipped_line(skipped)
        if line:
            err.write(f"pmaps: {line}\n")
        seen: list[FilePages] = view.seen
        if not seen and line:
            return 1
        if not args.quiet and seen:
            notes = missing_notes(seen[0].known, pfn=args.pfn)
            if args.cgroup and seen[0].cgroup is None:
                notes.append("memory cgroups (need root and /proc/kpagecgroup)")
            if notes:
                err.write("pmaps: '?' marks what cannot be known here: " + "; ".join(notes) + "\n")
        return 0
