"""Re-capture tests/golden/sysscan.npz (the input of test_top.py's golden tests), as root:

    python tests/golden/capture_top.py

A scan of a memchild layout and a forkchild family; pids renumbered from 100, PFNs shifted to a
small base (contiguity kept), meminfo replaced by round numbers: no real machine facts are kept.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from memchild import MemChild  # noqa: E402
from test_top import LAYOUT, ForkChild  # noqa: E402

from pmaps.store import scan as sysscan  # noqa: E402
from pmaps.kernel import pagemap as pmb  # noqa: E402
from pmaps.kernel.status import Ident  # noqa: E402
from pmaps.store import write_atomic  # noqa: E402


def main() -> None:
    fc = ForkChild("--workers", "2", "--cow", "1M", "--shared", "256K", "--clone-vm")
    try:
        fc.cmd("diverge 0 0 64")
        with MemChild(LAYOUT) as mc:
            scan = sysscan.scan_system([mc.pid, mc.grandchild, *fc.pids])
    finally:
        fc.close()
    newpid = {p.pid: 100 + i for i, p in enumerate(scan.procs)}
    names = {0: "memchild", 1: "memchild-gc", 2: "server", 5: "server"}  # 5: the CLONE_VM sibling
    procs = [replace(p, ident=Ident(newpid[p.pid], names.get(i, "worker"), 0,
                                    "/app.slice" if i < 2 else "/web.slice"))
             for i, p in enumerate(scan.procs)]
    pm = scan.pages.pm.copy()
    pres = pmb.present(pm)
    base = int((pm[pres] & pmb.PM_PFN_MASK).min()) & ~511
    pfn = (pm[pres] & pmb.PM_PFN_MASK).astype(np.int64) - base + 0x10000
    pm[pres] = (pm[pres] & ~pmb.PM_PFN_MASK) | pfn.astype(np.uint64)
    scan = replace(scan, procs=procs, pages=replace(scan.pages, pm=pm), skipped={"exited": [], "denied": []},
                   meminfo={"AnonPages": 40 << 20, "Mapped": 20 << 20}, complete=True, time=0.0)
    write_atomic(HERE / "sysscan.npz", sysscan.dumps(scan), 0o644)


if __name__ == "__main__":
    main()
