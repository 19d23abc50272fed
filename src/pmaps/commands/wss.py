"""pmaps wss PID: the working set, i.e. the pages accessed within an interval, and their ages."""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import time
from typing import Any, TextIO

import numpy as np

from ..analysis.wss import Ages, VmaWss, located, per_vma, runs
from ..collect import Options, Process, parse_pid
from ..errors import NoSuchProcess, PmapsError, Unsupported, ZombieProcess
from ..kernel import caps as capsmod
from ..kernel import damon as damonmod
from ..kernel import procfs
from ..kernel.refs import CLEAR_REFERENCED, IdleBitmap, clear_refs
from ..kernel.smaps import decode_smaps
from ..recording import refresh_vmas
from ..render.table import write_csv, write_table
from ..render.units import fmt_bytes, unit_header
from . import Command, add_output_options, positive, seconds

PAGE = 4096
# auto picks DAMON only for intervals this long: each DAMON cycle also writes one sysfs region per
# resident page and its samples stretch with the region count (measured: a 4200-page process took
# 0.7 s for a 0.3 s interval), so shorter cycles would mostly measure overhead. --method damon forces it.
DAMON_AUTO_MIN_INTERVAL = 1.0
LIMITS = {
    "idle": [
        "idle page tracking: page-exact for pages on the LRU; a THP is tracked by its head page;",
        "pages outside the LRU (zero page, kernel-owned) are never reported idle.",
    ],
    "damon": [
        "DAMON (paddr operations, one region per resident physical page, min = max regions so none merge or split)",
        "checks and clears the pte young bits of each page every 5 ms: page-exact for CPU and kernel accesses to",
        "pages on the LRU; a large folio is checked as a whole; a page mapped by other processes too is seen",
        "accessed when any of them touched it; a page moved to another PFN during the interval is not seen.",
        f"Above {damonmod.MAX_REGIONS} resident pages, regions group adjacent PFNs and are only sampled.",
        "Side effect: like idle tracking, the pages' young bits are cleared (reclaim sees them colder).",
    ],
    "clear_refs": [
        "clear_refs 1 clears the pte young bits and PG_referenced of every page of the process: reclaim then",
        "sees its pages as cold until touched again (nothing can set them back).",
        "ACCESSED per VMA is exact (smaps Referenced counts young ptes). LOCATED is the part known page by",
        "page: pages faulted in or swapped in since, and pages whose REFERENCED flag the kernel set again",
        "(read()/write(), GUP, faults); a CPU access to a resident page sets only the pte young bit, which",
        "no per-page interface exports without idle page tracking (CONFIG_IDLE_PAGE_TRACKING) or soft-dirty",
        "(CONFIG_MEM_SOFT_DIRTY, writes only). A large folio is referenced as a whole. Page ages count",
        "located accesses only.",
    ],
}


class Interrupted(Exception):
    pass


def _raise(signum: int, frame: object) -> None:
    raise Interrupted()


class Wss(Command):
    """Measure the working set: mark every page not-accessed, wait --interval, read back which were.

    Method: idle page tracking when the kernel has it, else DAMON (sysfs, root, no other DAMON
    user, --interval of 1 s or more), else clear_refs (see the limits printed with the result). With --cycles N, also a histogram of page ages (how many intervals ago each
    resident page was last seen accessed). Ctrl-C stops after the current cycle and prints what
    was measured so far.
    """

    name = "wss"
    order = 33

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID")
        p.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="seconds per cycle (default 1)")
        p.add_argument("--cycles", type=positive, default=1, metavar="N", help="cycles (default 1)")
        p.add_argument("--method", choices=("auto", "idle", "damon", "clear_refs"), default="auto",
                       help="auto: idle page tracking when available, else damon (intervals >= 1 s), else clear_refs")
        p.add_argument("--all", action="store_true", help="list VMAs with nothing resident too")
        add_output_options(p, formats=("text", "json", "csv"))

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pid = parse_pid(args.pid)
        caps = capsmod.probe()
        method = args.method
        if method == "auto":
            if caps.idle_tracking and caps.sys_admin:
                method = "idle"
            elif args.interval >= DAMON_AUTO_MIN_INTERVAL and caps.sys_admin and damonmod.usable() is None:
                method = "damon"
            else:
                method = "clear_refs"
        if method == "idle" and not (caps.idle_tracking and caps.sys_admin):
            raise Unsupported("idle page tracking is unavailable (no /sys/kernel/mm/page_idle/bitmap, or not root)")
        if method == "damon":
            why = None if caps.sys_admin else "DAMON needs root (CAP_SYS_ADMIN: PFNs and /sys/kernel/mm/damon)"
            why = why or damonmod.usable()
            if why is not None:
                raise Unsupported(why)
        res = self.measure(pid, method, args.interval, args.cycles, caps, err)
        self.write(out, res, args)
        if res["ended"] is not None:
            return res["ended"].exit_code
        return 130 if res["interrupted"] else 0

    def measure(self, pid: int, method: str, interval: float, cycles: int, caps: capsmod.Caps,
                err: TextIO) -> dict[str, Any]:
        old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
        bitmap: IdleBitmap | None = None
        ages = Ages()
        rows: list[VmaWss] = []
        per_cycle: list[dict[str, int]] = []
        last_runs = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        interrupted = False
        ended: PmapsError | None = None
        comm = ""
        try:
            with Process(pid, Options(), caps) as proc, contextlib.ExitStack() as stack:
                comm = proc.comm
                before = proc.snapshot()
                if method == "idle":
                    bitmap = IdleBitmap()
                dm = stack.enter_context(damonmod.Damon(pid)) if method == "damon" else None
                for c in range(cycles):
                    tried = None
                    if bitmap is not None:
                        pres = before.pages.present
                        bitmap.mark_idle(before.pages.pfn[pres])
                    elif dm is not None:
                        pres = before.pages.present & (before.pages.pfn != 0)
                        first, end, group = damonmod.page_regions(np.unique(before.pages.pfn[pres]))
                        if group > 1 and c == 0:
                            err.write(f"pmaps: {int(pres.sum())} resident pages: DAMON regions of {group} "
                                      f"adjacent PFNs, accesses are sampled per region, not page-exact\n")
                        tried = dm.sample(first, end, interval, damonmod.SAMPLE_US)  # takes `interval`
                    else:
                        clear_refs(pid, CLEAR_REFERENCED)
                    if tried is None:
                        time.sleep(interval)
                    proc.vmas = refresh_vmas(proc)
                    after = proc.snapshot()
                    idle = None
                    if tried is not None:
                        idle = ~damonmod.accessed_pages(after.pages.pfn, tried)
                        ref = None
                    elif bitmap is not None:
                        idle = np.zeros(len(after.pages), dtype=bool)
                        pres = after.pages.present
                        idle[pres] = bitmap.read_idle(after.pages.pfn[pres])
                        ref = None
                    else:
                        sm = decode_smaps(procfs.read_file(pid, "smaps", started=True))
                        ref = {r["start"]: r.get("Referenced", 0) for r in sm}
                    acc = located(before.pages, after.pages, idle=idle)
                    pres = after.pages.present
                    rows = per_vma(after.vmas, after.bounds(), acc, pres, ref)
                    ages.update(after.pages.vpn[pres], acc[pres])
                    last_runs = runs(after.pages.vpn, acc, np.array([v.start >> 12 for v in after.vmas]))
                    per_cycle.append(_totals(rows))
                    before = after
        except Interrupted:
            interrupted = True
            err.write("pmaps: interrupted: results of the completed cycles follow\n")
        except (NoSuchProcess, ZombieProcess) as e:
            if not per_cycle:
                raise
            # The target exited in a later cycle: what the completed cycles measured still stands.
            ended = e
            err.write(f"pmaps: {e}: results of the completed cycles follow\n")
        finally:
            if bitmap is not None:
                bitmap.close()
            for s, h in old.items():
                signal.signal(s, h)
        return {"pid": pid, "comm": comm, "method": method,
                "interval": interval, "cycles": per_cycle, "rows": rows, "ages": ages.histogram() if per_cycle else [],
                "interrupted": interrupted, "ended": ended, "runs": last_runs}

    def write(self, out: TextIO, res: dict[str, Any], args: argparse.Namespace) -> None:
        rows: list[VmaWss] = [r for r in res["rows"] if args.all or r.resident or r.accessed]
        if args.format == "json":
            doc = {"schema": "pmaps-wss/1", "pid": res["pid"], "comm": res["comm"], "method": res["method"],
                   "interval": res["interval"], "limits": LIMITS[res["method"]], "cycles": res["cycles"],
                   "vmas": [{"start": r.vma.start, "end": r.vma.end, "perms": r.vma.perms, "path": r.vma.path,
                             "resident": r.resident, "accessed": r.accessed, "located": r.located,
                             "counted": r.counted, "located_runs": _runs_in(res["runs"], r.vma.start, r.vma.end)}
                            for r in rows],
                   "ages": [{"age": a, "pages": n} for a, n in res["ages"]]}
            out.write(json.dumps(doc, indent=1) + "\n")
            return
        u = args.unit
        if args.format == "csv":
            write_csv(out, ["start", "end", "perms", "path", "resident_bytes", "accessed_bytes", "located_bytes"],
                      [[r.vma.start, r.vma.end, r.vma.perms, r.vma.path, r.resident * PAGE, r.accessed * PAGE,
                        r.located * PAGE] for r in rows])
            return
        n = len(res["cycles"])
        out.write(f"pmaps wss: pid {res['pid']} ({res['comm']}), method {res['method']}, "
                  f"{n} cycle{'s' * (n != 1)} of {res['interval']:g}s\n")
        for i, c in enumerate(res["cycles"], 1):
            out.write(f"cycle {i}: accessed {fmt_bytes(c['accessed'] * PAGE, u)} of {fmt_bytes(c['resident'] * PAGE, u)}"
                      f" resident (located page by page: {fmt_bytes(c['located'] * PAGE, u)})\n")
        h = unit_header(u)
        table = [[f"{r.vma.start:x}-{r.vma.end:x}", r.vma.perms, fmt_bytes(r.resident * PAGE, u),
                  fmt_bytes(r.accessed * PAGE, u), fmt_bytes(r.located * PAGE, u), r.vma.path] for r in rows]
        t = _totals(rows)
        out.write("\n")
        write_table(out, ["ADDRESS", "PERMS", "RESIDENT" + h, "ACCESSED" + h, "LOCATED" + h, "MAPPING"], table, left=2,
                    footer=[["total", "", fmt_bytes(t["resident"] * PAGE, u), fmt_bytes(t["accessed"] * PAGE, u),
                             fmt_bytes(t["located"] * PAGE, u), ""]])
        if n > 1:
            out.write("\npage ages: resident pages by intervals since their last located access\n")
            write_table(out, ["AGE", "PAGES", "SIZE" + h], [[a, str(k), fmt_bytes(k * PAGE, u)] for a, k in res["ages"]],
                        left=1)
        out.write("\n" + "\n".join(f"# {ln}" for ln in LIMITS[res["method"]]) + "\n")


def _runs_in(rs: tuple[np.ndarray, np.ndarray], start: int, end: int) -> list[list[int]]:
    """[[address, pages], ...] of the last cycle's located runs inside [start, end)."""
    first, n = rs
    lo, hi = np.searchsorted(first, [start >> 12, end >> 12])
    return [[a << 12, k] for a, k in zip(first[lo:hi].tolist(), n[lo:hi].tolist())]


def _totals(rows: list[VmaWss]) -> dict[str, int]:
    return {"resident": sum(r.resident for r in rows), "accessed": sum(r.accessed for r in rows),
            "located": sum(r.located for r in rows)}
