"""kpagecgroup for the pages of a SystemScan: the memory cgroup each mapped page is charged to
(`top --group-by cgroup`, and kept in a saved scan)."""
from __future__ import annotations

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.cgroup import find_memory_hierarchy, memcg_dirs
from ..kernel.kpage import lookup_cgroup
from ..model import SystemScan


def attach_cgroups(scan: SystemScan) -> str | None:
    """Fill scan.pages.kcgroup (0 for pages not present or charged to none) and scan.memcgs
    (inode -> path, as /proc/PID/cgroup prints it). Returns None when done or already there,
    else why it cannot be (in words, for a note)."""
    if scan.pages.kcgroup is not None and scan.memcgs is not None:
        return None
    if not scan.known.pfn:
        return "needs root (PFNs and /proc/kpagecgroup)"
    h = find_memory_hierarchy()
    if h is None:
        return "no memory cgroup controller here"
    pres = pmb.present(scan.pages.pm)
    cg = lookup_cgroup(scan.pages.pfn[pres])
    if cg is None:
        return "/proc/kpagecgroup cannot be read"
    kc = np.zeros(len(scan.pages), dtype=np.uint64)
    kc[pres] = cg
    scan.pages.kcgroup = kc
    scan.memcgs = memcg_dirs(h)
    return None
