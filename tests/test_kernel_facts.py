"""Facts about this kernel that pmaps relies on, checked on real processes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from memchild import MemChild

import pmaps
from pmaps.kernel import pagemap as pmb


def test_exclusive_bit_means_mapcount_one():
    """collect() reads kpagecount only for pages without pagemap's exclusive bit: that is sound
    only if the bit is set exactly when kpagecount is 1 (fs/proc/task_mmu.c on 6.x)."""
    with MemChild(["a:anon:1M", "sh:shared:256K", "c:cow:256K", "t:thp:2M"]) as mc:
        snap = pmaps.collect(mc.pid, flags=False)
        fd = os.open("/proc/kpagecount", os.O_RDONLY)
        try:
            # The child's own regions only: library pages' map counts move as other processes
            # come and go between the snapshot and the reads below.
            vpn = snap.pages.vpn
            mine = np.zeros(len(vpn), dtype=bool)
            for r in mc.regions.values():
                mine |= (vpn >= r["start"] // 4096) & (vpn < r["end"] // 4096)
            pres = snap.pages.present & ~snap.pages.zero(snap.known) & mine
            pfn = snap.pages.pfn[pres]
            real = np.array([int.from_bytes(os.pread(fd, 8, int(p) * 8), "little") for p in pfn[:5000]])
        finally:
            os.close(fd)
        excl = pmb.bit(snap.pages.pm[pres], pmb.PM_EXCLUSIVE)[:5000]
        assert ((real == 1) == excl).all()
        assert np.array_equal(snap.pages.kcount[pres][:5000], real)
        assert (real == 2).any() and (real == 1).any()


def test_pagemap_scan_present():
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 7):
        pytest.skip("PAGEMAP_SCAN arrived in Linux 6.7")
    snap = pmaps.collect(os.getpid())
    assert snap.known.categories


def test_thp_tail_flags_derived_from_head():
    """collect() reads kpageflags once per PMD-mapped THP and derives the 511 tails' flags from
    the head's: they must equal what kpageflags says for each tail (ABI bits 0-26)."""
    from pmaps.kernel.kpage import KPF_ABI_MASK

    with MemChild(["t:thp:8M", "a:anon:1M"]) as mc:
        snap = pmaps.collect(mc.pid)
        reg = mc.regions["t"]
        sel = (snap.pages.vpn >= reg["start"] // 4096) & (snap.pages.vpn < reg["end"] // 4096)
        assert (snap.pages.pmd_mapped(snap.known)[sel]).all()
        pfn = snap.pages.pfn[sel]
        fd = os.open("/proc/kpageflags", os.O_RDONLY)
        try:
            real = np.frombuffer(b"".join(os.pread(fd, 8, int(p) * 8) for p in pfn), dtype="<u8")
        finally:
            os.close(fd)
        # Two reads: leave out the bits the kernel flips by itself meanwhile (the machine's DAMON
        # thread sets IDLE; reclaim moves REFERENCED/ACTIVE), as analysis.diff.VOLATILE does.
        from pmaps.analysis.diff import VOLATILE

        mask = np.uint64(KPF_ABI_MASK) & ~VOLATILE
        assert np.array_equal(snap.pages.kflags[sel] & mask, real & mask)
        assert ((real >> np.uint64(16)) & np.uint64(1)).sum() == len(pfn) - len(pfn) // 512  # tails
