"""pmaps save PID -o FILE: one snapshot to a file that 'pmaps show FILE' and pmaps.store.load read."""
from __future__ import annotations

import argparse
from typing import TextIO

from ..collector.options import Options
from ..errors import UsageError
from ..kernel import procfs
from ..safetext import printable
from . import Command
from ._common import add_force_option, parse_pid


class Save(Command):
    """Save a snapshot of a process's pages to FILE (.npz, 0600, written atomically).

    FILE must be new, or a regular file with --force; pmaps never replaces a symlink, a device
    node or a directory, nor creates a missing directory.
    """

    name = "save"
    order = 10

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID")
        p.add_argument("-o", "--output", required=True, metavar="FILE")
        p.add_argument("--pfn", action="store_true", help="keep PFNs in the file (sensitive: off by default)")
        p.add_argument("--no-scan", action="store_true", help="use the pagemap fallback instead of PAGEMAP_SCAN")
        add_force_option(p)
        p.add_argument("-q", "--quiet", action="store_true", help="no line on stderr about what was saved")

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pid = parse_pid(args.pid)
        if not args.output:
            raise UsageError("-o needs a file name")
        procfs.read_ahead(pid, "maps")  # while numpy and the rest are imported
        from ..collector import Process
        from ..store.files import check_output
        from ..store.snapshot import save_parts

        check_output(args.output, args.force)  # refused now, not after the scan

        with Process(pid, Options(scan=False if args.no_scan else None)) as proc:
            # The parts, not a Snapshot: its list of Vma objects is not needed to write the file.
            pages, table, comm = proc.pages(), proc.table, proc.comm
            save_parts(args.output, pid, comm, table, pages, proc.known, keep_pfns=args.pfn, force=args.force)
        if not args.quiet:
            said = f"pmaps: saved {len(pages)} pages of {len(table)} VMAs of {pid} ({comm}) to {args.output}"
            err.write(printable(said) + "\n")
        return 0
