"""Re-capture tests/golden/layout.npz from a real child (run as root, with swap enabled):

    python tests/golden/capture.py

PFNs are kept (the --pfn golden needs them) but shifted down to a small base, keeping their
contiguity and 2 MiB alignment: the fixture holds no real physical address.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from memchild import MemChild  # noqa: E402

import pmaps  # noqa: E402
from pmaps.kernel import pagemap as pmb  # noqa: E402
from pmaps.store import save  # noqa: E402

LAYOUT = ["a:anon:64K", "s:anon:256K:every=16", "z:zero:32K", "f:file:64K:read=2-6", "sh:shared:32K",
          "t:thp:2M", "sw:anon:64K", "r:reserve:1T"]


def main() -> None:
    with MemChild(LAYOUT) as mc:
        mc.cmd("pageout sw 0 8")
        snap = pmaps.collect(mc.pid)
        mine = {r["start"] for r in mc.regions.values()}
    keep = [v for v in snap.vmas if v.start in mine]
    inside = np.zeros(len(snap.pages), dtype=bool)  # a snapshot holds only pages inside its VMAs
    for v in keep:
        inside |= (snap.pages.vpn >= v.start >> 12) & (snap.pages.vpn < v.end >> 12)
    pages = snap.pages.take(inside)
    pm = pages.pm.copy()
    pres = pmb.present(pm)
    base = int((pm[pres] & pmb.PM_PFN_MASK).min()) & ~511
    pfn = (pm[pres] & pmb.PM_PFN_MASK).astype(np.int64) - base + 0x10000
    pm[pres] = (pm[pres] & ~pmb.PM_PFN_MASK) | pfn.astype(np.uint64)
    snap = replace(snap, vmas=keep, pages=replace(pages, pm=pm), comm="memchild", pid=4242, time=0.0)
    save(snap, HERE / "layout.npz", keep_pfns=True)


if __name__ == "__main__":
    main()
