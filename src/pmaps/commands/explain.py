"""pmaps explain PID: why ps, top, smem and smaps disagree, number by number."""
from __future__ import annotations

import argparse
import contextlib
from functools import partial
from typing import TextIO

from ..errors import AccessDenied, UsageError
from . import Command, add_output_options
from ._common import parse_pid


class Explain(Command):
    """Explain a process's memory numbers: VmRSS, RssAnon/File/Shmem, smaps Rss/Pss/Pss_*, USS, Swap,
    SwapPss, each shown as the sum of the buckets pmaps measured page by page (anon, KSM, file, shmem,
    zero page, hugetlb, swapped private and shmem pages), next to the kernel's own value. Root."""

    name = "explain"
    order = 24

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID", nargs="?", help="the process (or --system)")
        p.add_argument("--cgroup", metavar="PATH",
                       help="a memory cgroup (as in /proc/PID/cgroup): usage, working set and memory.stat against "
                            "the pages charged to it (kpagecgroup)")
        p.add_argument("--system", action="store_true",
                       help="the whole machine: /proc/meminfo against physical pages by kpageflags, and the "
                            "PSS of every process against AnonPages + Mapped")
        p.add_argument("--chart", metavar="FILE.png", help="also draw the numbers as stacked bars (matplotlib)")
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from ..analysis.explain import explain
        from ..analysis.footprint import Facts, figures, finish
        from ..collector import Options, Process
        from ..collector.observer import Observer
        from ..collector.parallel import background
        from ..collector.swap import machine_swap_refs
        from ..kernel import pagemap as pmb
        from ..kernel.smaps import read_rollup
        from ..kernel.status import read_status
        from ..render import write
        from ..render.explain import ExplainView, chart_png

        if sum(x is not None and x is not False for x in (args.pid, args.cgroup, args.system or None)) > 1:
            raise UsageError("give one of a PID, --cgroup PATH or --system")
        if args.system:
            return self._system(args, out)
        if args.cgroup:
            return self._cgroup(args, out)
        if args.pid is None:
            raise UsageError("give a PID, --cgroup PATH or --system")
        pid = parse_pid(args.pid)
        if args.chart and not args.chart.lower().endswith(".png"):
            raise UsageError(f"--chart writes a PNG: the file name must end in .png ({args.chart!r})")
        if args.chart:
            from ..store.files import check_output

            check_output(args.chart)  # before the work, not after it
        # The kernel's numbers are read while pmaps runs: compare with the raw counts (pmaps' own
        # mappings included), and say what PSS is without pmaps.
        for _attempt in range(5):
            # The bracket's first rollup walks the target on a thread while its maps are read and
            # decoded here (both hold its mmap_lock for reading only), and ends before its pages are
            # read: 30 ms of a 65,000-VMA process off the command's path.
            first = background(partial(read_rollup, pid))
            try:
                proc = Process(pid, Options(include_self=True)).open()
            except BaseException:
                with contextlib.suppress(Exception):
                    first()
                raise
            try:
                before = first()
                p, known, comm = proc.pages(), proc.known, proc.comm  # no Vma objects: not needed
            finally:
                proc.close()
            status, rollup = read_status(pid), read_rollup(pid)
            if before == rollup:
                break
        if not (known.flags and known.count):
            raise AccessDenied("pmaps explain needs kpageflags and kpagecount: run as root", pid)
        refs = machine_swap_refs() if pmb.swapped(p.pm).any() else None
        share = refs.share(p.pm) if refs is not None else None
        figs = figures(Facts.of_pages(p, known, share), ("uss", "swap_pss", "pss"))
        fin = finish(figs.total(), figs.unknown, ("uss", "swap_pss", "pss"))
        ex = explain(pid, comm, p, known, status, rollup, fin["uss"] or 0, fin["swap_pss"] or 0)
        obs = Observer.read()
        without = None
        if obs is not None and p.kcount is not None:
            kc = p.kcount.copy()
            pres = p.present
            kc[pres] = obs.subtract(p.pfn[pres], kc[pres])
            alt = type(p)(p.vpn, p.pm, p.cat, p.kflags, kc, p.idle)
            without = finish(figures(Facts.of_pages(alt, known), ("pss",)).total(), set(), ("pss",))["pss"]
        view = ExplainView(ex, without)
        write(view, out, args.format, args.unit)
        if args.chart:
            from ..store import save_bytes

            save_bytes(args.chart, chart_png(ex, f"pmaps explain {ex.pid} ({ex.comm})"), 0o600)
        return 0

    def _cgroup(self, args: argparse.Namespace, out: TextIO) -> int:
        from ..analysis.cgroups import kernel_side
        from ..analysis.explain import cgroup_buckets, explain_cgroup
        from ..errors import Unsupported
        from ..kernel import cgroup as K
        from ..kernel.kpage import iter_kpageflags_cgroup
        from ..render import write
        from ..render.explain import SystemExplainView

        h = K.find_memory_hierarchy()
        if h is None:
            raise Unsupported("no memory cgroup controller here (neither v1 'memory' nor v2 with memory)")
        path = "/" + args.cgroup.strip("/")
        names = K.memcg_dirs(h)
        inode = next((i for i, p in names.items() if p == path), None)
        if inode is None:
            raise UsageError(f"--cgroup: no memory cgroup {args.cgroup!r}")  # exit 2, as top's and cgroups'
        below = {i for i, p in names.items() if p.startswith(path.rstrip("/") + "/")}
        b = cgroup_buckets(iter_kpageflags_cgroup(), inode, below)
        stats = {p: K.read_memory_stat(h, p) for p in names.values()}
        st = stats.get(path) or {}
        inactive = st.get("total_inactive_file" if h.version == 1 else "inactive_file")
        rows = explain_cgroup(h.version, K.read_usage(h, path), inactive, kernel_side(path, stats, h.version), b)
        write(SystemExplainView(rows, b, 0, schema="pmaps-explain-cgroup/1", title=f"memory cgroup {path}"), out,
              args.format, args.unit)
        return 0

    def _system(self, args: argparse.Namespace, out: TextIO) -> int:
        from ..analysis import system as S
        from ..analysis.explain import explain_system, system_buckets
        from ..collector import scan_system
        from ..collector.observer import Observer
        from ..kernel.kpage import iter_kpageflags
        from ..kernel.meminfo import read_meminfo
        from ..render import write
        from ..render.explain import SystemExplainView

        scan = scan_system()
        reps = S.mm_reps(scan)
        figs = S.page_figures(scan, reps)
        total = S.total_row(S.process_rows(scan, figs, reps), scan, figs, reps)
        mine = Observer.private_pfns()
        meminfo = read_meminfo()
        buckets = system_buckets(iter_kpageflags())
        rows = explain_system(meminfo, buckets, total.get("pss"), scan.self_pss)
        write(SystemExplainView(rows, buckets, len(mine) * 4096), out, args.format, args.unit)
        return 0
