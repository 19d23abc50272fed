"""pmaps --folios: bytes by folio size against smaps' AnonHugePages and the kernel's mTHP counters."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import pmaps_cmd, smaps_by_start
from memchild import MemChild
from pmaps.analysis.folios import BLOCK, HEAD, TAIL, folio_of

THP = Path("/sys/kernel/mm/transparent_hugepage")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags, PFNs)")


def test_folio_of_runs():
    """Heads and tails in an aligned block give each page its folio; order-0 pages stay alone."""
    flags = np.zeros((1, BLOCK), dtype=np.uint64)
    flags[0, 16] = HEAD
    flags[0, 17:32] = TAIL  # a 64 KiB folio at 16
    flags[0, 64] = HEAD
    flags[0, 65:68] = TAIL  # 16 KiB at 64
    start = np.array([1024], dtype=np.uint64)
    pfn = np.array([1024 + 16, 1024 + 31, 1024 + 66, 1024 + 70, 5], dtype=np.uint64)
    head, size = folio_of(pfn, start, flags)
    assert size.tolist() == [16, 16, 4, 1, 1]
    assert head.tolist() == [1040, 1040, 1088, 1094, 5]


@contextlib.contextmanager
def mthp(*sizes_kb: int) -> Iterator[None]:
    """Turn these mTHP sizes to `always` for the test, and back afterwards (root)."""
    old = {}
    try:
        for kb in sizes_kb:
            f = THP / f"hugepages-{kb}kB" / "enabled"
            text = f.read_text()
            old[f] = text[text.index("[") + 1:text.index("]")]
            f.write_text("always")
        yield
    finally:
        for f, v in old.items():
            f.write_text(v)


def folios(pid: int) -> dict[int, dict]:
    """Rows by VMA start; the process total under key -1."""
    (p,) = json.loads(pmaps_cmd("--folios", "--format", "json", str(pid)).stdout)["processes"]
    return {**{v["start"]: v for v in p["vmas"]}, -1: p["total"]}


@needs_root
def test_pmd_thp_equals_anon_huge_pages():
    with MemChild(["t:thp:4M", "a:anon:64K"]) as mc:
        got = folios(mc.pid)
        k = smaps_by_start(mc.pid)
        t = mc.regions["t"]["start"]
        assert got[t]["bytes_by_folio_size"].get(str(2 << 20), 0) == k[t]["AnonHugePages"]
        a = mc.regions["a"]["start"]
        assert got[a]["bytes_by_folio_size"] == {"4096": 64 << 10}
        if k[t]["AnonHugePages"] != 4 << 20:  # the fault fell back to small pages (fragmented memory)
            pytest.skip(f"the kernel gave {k[t]['AnonHugePages']} bytes of THP of 4 MiB asked for")


@needs_root
@pytest.mark.skipif(not (THP / "hugepages-64kB").exists(), reason="no mTHP sizes in this kernel (6.8+)")
def test_mthp_sizes_match_the_kernel_counters():
    """With 16K and 64K mTHP on, a fresh anonymous region is made of those folios, and the whole new
    process's folios of each size (pmaps) equal what the kernel's stats/nr_anon counters gained
    while it started (retried while other processes allocate mTHP meanwhile)."""
    def nr(kb: int) -> int:
        return int((THP / f"hugepages-{kb}kB" / "stats" / "nr_anon").read_text())

    seen = []
    with mthp(16, 64):
        for _ in range(10):
            before = {kb: nr(kb) for kb in (16, 64)}
            with MemChild(["m:anon:2M"]) as mc:
                during = {kb: nr(kb) for kb in (16, 64)}
                rows = folios(mc.pid)
                got = rows[mc.regions["m"]["start"]]["bytes_by_folio_size"]
                rss = smaps_by_start(mc.pid)[mc.regions["m"]["start"]]["Rss"]
                total = rows[-1]["bytes_by_folio_size"]
            assert sum(got.values()) == rss and got.get(str(64 << 10), 0) >= 1 << 20
            counts = {kb: total.get(str(kb << 10), 0) // (kb << 10) for kb in (16, 64)}
            delta = {kb: during[kb] - before[kb] for kb in (16, 64)}
            seen.append((counts, delta))
            if counts == delta:  # (pmaps itself allocates mTHP folios too: only before its read counts)
                return
        pytest.fail(f"(pmaps folios, kernel nr_anon delta) never agreed: {seen}")


@needs_root
@pytest.mark.skipif(not (THP / "hugepages-64kB").exists(), reason="no mTHP sizes in this kernel (6.8+)")
def test_exporter_trusts_pmds_only_without_mthp():
    """The exporter tells a collapsed process by its PMDs only where no smaller THP size is on
    (kernel.vmstat.collapses_only_to_pmd): with 64K on, it reads every process again instead."""
    from pmaps.kernel.vmstat import collapses_only_to_pmd

    sizes = [p.parent.name for p in THP.glob("hugepages-*kB/enabled")
             if p.parent.name != f"hugepages-{int((THP / 'hpage_pmd_size').read_text()) // 1024}kB"]
    if all("[never]" in (THP / s / "enabled").read_text() for s in sizes):
        assert collapses_only_to_pmd()
    with mthp(64):
        assert not collapses_only_to_pmd()
