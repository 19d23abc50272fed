"""pmaps shared PID PID...: pages physically in common (same PFN), per pair and per VMA of the first."""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, TextIO

from ..collector.options import NO_SCAN_ENV, Options
from ..errors import AccessDenied, UsageError
from ..kernel import caps as capsmod
from ..kernel import procfs
from . import Command, add_output_options
from ._common import parse_pid

# numpy and the layers that use it are imported once the first process's maps is being read ahead
# (procfs.read_ahead): the read and the imports overlap.
if TYPE_CHECKING:
    from ..analysis.sharing import Mapped


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

    @staticmethod
    def _read(pid: int, caps: capsmod.Caps, no_scan: bool, flags: bool) -> Mapped:
        """The process's pages and VMA table (no Vma objects); kpageflags read too when pagemap
        turns out to be read without PAGEMAP_SCAN (its categories tell the zero page otherwise)."""
        from ..analysis.sharing import Mapped
        from ..collector import Process

        with Process(pid, Options(flags=flags, counts=False, scan=False if no_scan else None), caps) as proc:
            if flags or proc.scanning:
                return Mapped(pid, proc.comm, proc.pages(), proc.known, proc.table)
        return Shared._read(pid, caps, no_scan, True)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pids = [parse_pid(p) for p in args.pids]
        if len(pids) < 2:
            raise UsageError("give at least two PIDs")
        caps = capsmod.probe()
        if not caps.sys_admin:
            raise AccessDenied("pmaps shared compares physical page numbers, which only root (CAP_SYS_ADMIN) "
                               "can read in /proc/PID/pagemap")
        # The zero page is told by PAGEMAP_SCAN's categories, or else by kpageflags: those are read
        # (90 ms more for 133,000 pages in 65,531 VMAs) only when pagemap is read without the scan
        # (asked for here; a kernel without it reopens the process).
        flags = args.no_scan or bool(os.environ.get(NO_SCAN_ENV))
        procfs.read_ahead(pids[0], "maps")
        from ..analysis.sharing import sharing_of
        from ..render import write
        from ..render.shared import SharedView

        procs = [self._read(pid, caps, args.no_scan, flags) for pid in pids]
        write(SharedView(sharing_of(procs)), out, args.format, args.unit)
        return 0
