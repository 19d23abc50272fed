"""kpageflags read a folio block at a time (kernel.kpage.FOLIO_BLOCK), and the lookup plan's runs."""
from __future__ import annotations

import os

import numpy as np
import pytest
from memchild import MemChild

import pmaps
from pmaps.kernel import kpage
from pmaps.kernel import pagemap as pmb
from pmaps.kernel.kpage import FOLIO_BLOCK, LookupPlan, cut_blocks, folio_blocks, plan_lookup


def _plan(starts: list[int], lens: list[int]) -> LookupPlan:
    s, n = np.array(starts, dtype=np.int64), np.array(lens, dtype=np.int64)
    return LookupPlan(s, n, np.zeros(0, dtype=np.int64))


def test_plan_lookup_falling_and_mixed_runs(kpage_path):
    """Runs that step by -1 as well as +1 (and stay, the zero page) are one interval each."""
    pfns = [500, 499, 498, 497, 498, 499, 500, 501, 7, 7, 7, 6, 5, 1000, 1001, 999]
    plan = plan_lookup(np.array(pfns, dtype=np.uint64), gap=1, core=kpage_path)
    buf = np.concatenate([np.arange(s, s + n) for s, n in zip(plan.seg_start.tolist(), plan.seg_len.tolist())])
    assert buf[plan.index].tolist() == pfns
    assert plan.total == (501 - 497 + 1) + 3 + 3  # no PFN outside the runs is read


def test_folio_blocks_inside_segments_only():
    plan = _plan([0, 1000], [200, 64])
    pfns = np.array([5, 70, 130, 190, 1010, 1100], dtype=np.uint64)
    # [0,64) and [64,128) lie in the first segment, [128,192) too; [192,256) does not; [960,1024)
    # does not start in a segment, and 1100 is in none.
    assert folio_blocks(plan, pfns).tolist() == [0, 64, 128]
    assert folio_blocks(_plan([1024], [64]), np.array([1030], dtype=np.uint64)).tolist() == [1024]


def test_cut_blocks_keeps_positions():
    plan = _plan([0, 1000], [256, 100])
    starts, lens, pos = cut_blocks(plan, np.array([64, 128], dtype=np.int64))
    assert list(zip(starts.tolist(), lens.tolist(), pos.tolist())) == [(0, 64, 0), (192, 64, 192), (1000, 100, 256)]
    starts, lens, pos = cut_blocks(_plan([0], [128]), np.array([0, 64], dtype=np.int64))
    assert len(starts) == 0


def _real_flags(pfn: np.ndarray) -> np.ndarray:
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        return np.frombuffer(b"".join(os.pread(fd, 8, int(p) * 8) for p in pfn), dtype="<u8")
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="kpageflags needs root")
def test_file_folio_flags_derived_from_probes(monkeypatch, kpage_path):
    """collect() reads the flags of file pages a folio block at a time where one large folio fills
    the block: the flags must be what kpageflags says for each page (ABI bits, less the ones the
    kernel flips by itself), and the blocks must have been probed."""
    from pmaps.analysis.diff import VOLATILE

    probed: list[int] = []
    real_read_at = kpage.PfnReader._read_at

    def counted(self: kpage.PfnReader, pfns: np.ndarray) -> np.ndarray:
        probed.append(len(pfns))
        return real_read_at(self, pfns)

    monkeypatch.setattr(kpage.PfnReader, "_read_at", counted)
    with MemChild(["f:file:16M", "a:anon:1M"]) as mc:
        snap = pmaps.collect(mc.pid)
        reg = mc.regions["f"]
        sel = (snap.pages.vpn >= reg["start"] // 4096) & (snap.pages.vpn < reg["end"] // 4096) & snap.pages.present
        pfn = snap.pages.pfn[sel]
        real = _real_flags(pfn)
    mask = np.uint64(kpage.KPF_ABI_MASK) & ~VOLATILE
    assert np.array_equal(snap.pages.kflags[sel] & mask, real & mask)
    tails = (real & kpage.KPF_TAIL) != 0
    if tails.sum() < 4 * FOLIO_BLOCK:
        pytest.skip("this kernel keeps the file's page cache in small folios: nothing to derive")
    assert probed  # the blocks were probed
    assert bool(pmb.bit(snap.pages.pm[sel], pmb.PM_FILE).all())
