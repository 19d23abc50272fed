"""pmaps shared PID PID...: pages physically in common (same PFN), per pair and per VMA of the first."""
from __future__ import annotations

import argparse
import gc
from typing import TextIO

from ..analysis.sharing import sharing
from ..collector import Options, Process
from ..errors import AccessDenied, UsageError
from ..kernel import caps as capsmod
from ..render import write
from ..render.shared import SharedView
from . import Command, add_output_options
from ._common import parse_pid


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

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pids = [parse_pid(p) for p in args.pids]
        if len(pids) < 2:
            raise UsageError("give at least two PIDs")
        caps = capsmod.probe()
        if not caps.sys_admin:
            raise AccessDenied("pmaps shared compares physical page numbers, which only root (CAP_SYS_ADMIN) "
                               "can read in /proc/PID/pagemap")
        opts = Options(flags=True, counts=False, scan=False if args.no_scan else None)
        # A row per VMA of the first process, each a few dicts and strings: 65,000 VMAs make half a
        # million objects, none in a reference cycle, which the cyclic collector would otherwise
        # walk again and again as they are made (0.3-0.5 s of the command). Freed by reference
        # counting all the same.
        collect = gc.isenabled()
        if collect:
            gc.disable()
        try:
            snaps = []
            for pid in pids:
                with Process(pid, opts, caps) as proc:
                    snaps.append(proc.snapshot())
            write(SharedView(sharing(snaps)), out, args.format, args.unit)
        finally:
            if collect:
                gc.enable()
        return 0
