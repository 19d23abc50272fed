"""pmaps wss PID: the working set, i.e. the pages accessed within an interval, and their ages."""
from __future__ import annotations

import argparse
from typing import TextIO

from ..analysis.wss import measure
from ..render import write
from ..render.wss import WssView
from . import Command, add_cpu_option, add_output_options, budget_interval, positive, seconds
from ._common import parse_pid


class Wss(Command):
    """Measure the working set: mark every page not-accessed, wait --interval, read back which were.

    Method: idle page tracking when the kernel has it, else DAMON (sysfs, root, no other DAMON
    user, --interval of 1 s or more), else clear_refs (see the limits printed with the result).
    With --cycles N, also a histogram of page ages (how many intervals ago each resident page was
    last seen accessed). With --max-cpu, a cycle whose work (marking, reading back) costs more
    than the budget allows lasts longer than --interval. Ctrl-C stops after the current cycle and
    prints what was measured so far.
    """

    name = "wss"
    order = 33

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID")
        p.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="seconds per cycle (default 1)")
        p.add_argument("--cycles", type=positive, default=1, metavar="N", help="cycles (default 1)")
        add_cpu_option(p)
        p.add_argument("--method", choices=("auto", "idle", "damon", "clear_refs"), default="auto",
                       help="auto: idle page tracking when available, else damon (intervals >= 1 s), else clear_refs")
        p.add_argument("--all", action="store_true", help="list VMAs with nothing resident too")
        p.add_argument("--sort", choices=("address", "accessed", "resident"), default="address",
                       help="order of the VMA rows (sizes descending; default address)")
        p.add_argument("-n", "--limit", type=positive, default=0, metavar="N", help="show the first N VMAs only")
        add_output_options(p, formats=("text", "json", "csv"))

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pid = parse_pid(args.pid)
        def note(msg: str) -> None:
            err.write(f"pmaps: {msg}\n")

        def pace(cost: float) -> float:
            return budget_interval(args.interval, cost, args.max_cpu)

        res = measure(pid, args.method, args.interval, args.cycles, note=note,
                      pace=pace if args.max_cpu else None)
        if res.interrupted:
            err.write("pmaps: interrupted: results of the completed cycles follow\n")
        if res.ended is not None:
            err.write(f"pmaps: {res.ended}: results of the completed cycles follow\n")
        write(WssView.build(res, args.all, args.sort, args.limit), out, args.format, args.unit)
        if res.ended is not None:
            return res.ended.exit_code
        return 130 if res.interrupted else 0
