"""Pacing of the reads that hold a target's mmap_lock (kernel.pagemap.Pacer): a pause after each
PACE_HOLD of back-to-back reads, none after an idle moment; paced and cut reads give the same entries
and regions as whole ones. The clock is a counter here: no test depends on time."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import PAGE
from memchild import MemChild
from pmaps.kernel import pagemap as pmb
from pmaps.kernel import pagemap_scan
from pmaps.kernel import procfs

U64 = np.uint64


class Clock:
    """A clock that moves only when told (and by `step` at every reading)."""

    def __init__(self, step: float = 0.0) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_pacer_pauses_after_a_burst_only():
    clock = Clock()
    naps: list[float] = []

    def nap(s: float) -> None:
        naps.append(clock.t)
        clock.t += s

    p = pmb.Pacer(clock=clock, nap=nap, hold=1.0, gap=0.1)
    # Reads of 0.3 s each, back to back: a pause before the read that would start 1 s into the burst.
    starts = []
    for _ in range(9):
        p.before()
        starts.append(clock.t)
        clock.t += 0.3
        p.after()
    assert len(naps) == 2
    assert naps[0] == pytest.approx(100.0 + 4 * 0.3)  # reads 0-3 made the first burst (1.2 s >= 1 s)
    assert starts[4] - naps[0] == pytest.approx(0.1)  # the pause lasted `gap`
    assert naps[1] == pytest.approx(starts[4] + 4 * 0.3)
    # An idle moment of `gap` (the caller's own work) ends a burst as a pause does: no pause, however
    # long the reads before it.
    n = len(naps)
    for _ in range(10):
        clock.t += 0.15
        p.before()
        clock.t += 0.9
        p.after()
    assert len(naps) == n and p.naps == n


def test_pacer_bursts_are_per_process():
    """A burst is of one process's reads (one mmap_lock): reads of processes in turn, back to back,
    never pause; the same process's reads do, once the burst is long enough."""
    clock = Clock()
    naps: list[float] = []
    p = pmb.Pacer(clock=clock, nap=lambda s: naps.append(s), hold=1.0, gap=0.1)
    for i in range(20):
        p.before(target=1000 + i % 2)  # two processes in turn
        clock.t += 0.3
        p.after()
    assert not naps
    for _ in range(5):
        p.before(target=7)
        clock.t += 0.3
        p.after()
    assert len(naps) == 1


@pytest.fixture
def pacing(monkeypatch):
    """Reads cut small, and a pause every few reads: each clock reading counts 1 us."""
    clock = Clock(step=1e-6)
    pacer = pmb.Pacer(clock=clock, nap=lambda s: None, hold=5e-6, gap=1.0)
    monkeypatch.setattr(pagemap_scan, "PACER", pacer)
    monkeypatch.setattr(pmb, "READ_MAX_PAGES", 3)
    return pacer


def test_paced_reads_are_the_same(pacing, monkeypatch):
    pages = 2000
    with MemChild([f"alt:anon:{pages * PAGE}:every=2", f"a:anon:{64 * PAGE}"]) as mc:
        fd = procfs.open_pagemap(mc.pid)
        try:
            runs = sorted((r["start"] // PAGE, r["end"] // PAGE) for r in mc.regions.values())
            starts = np.array([s for s, _ in runs], dtype=U64)
            ends = np.array([e for _, e in runs], dtype=U64)
            scanner = pmb.Scanner(fd, mc.pid, max_pages=7)
            regs = scanner.regions(0, pmb.TASK_SIZE_MAX)
            paced = pmb.read_runs(fd, mc.pid, starts, ends)
            naps = pacing.naps
            monkeypatch.setattr(pmb, "READ_MAX_PAGES", 1 << 40)
            monkeypatch.setattr(pagemap_scan, "PACER", pmb.Pacer(hold=float("inf")))
            whole = pmb.read_runs(fd, mc.pid, starts, ends)
            whole_regs = pmb.Scanner(fd, mc.pid).regions(0, pmb.TASK_SIZE_MAX)
        finally:
            procfs.close(fd)
    assert naps > 10  # the reads were cut and paused
    assert len(paced) == pages + 64 and (paced == whole).all()
    assert pmb.populated(paced).sum() == pages // 2 + 64
    assert np.array_equal(merged(regs), merged(whole_regs))  # the walk cut by max_pages, not changed


def merged(regs: np.ndarray) -> np.ndarray:
    """Regions with adjacent ones of equal categories joined (a walk stopped by max_pages splits them)."""
    new = np.ones(len(regs), dtype=bool)
    new[1:] = (regs[1:, 0] != regs[:-1, 1]) | (regs[1:, 2] != regs[:-1, 2])
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(regs)) - 1
    return np.stack([regs[first, 0], regs[last, 1], regs[first, 2]], axis=1)


def test_own_pages_read_first_on_one_cpu():
    """On one CPU pmaps' own pages (the observer correction) are read before the target's, not on a
    thread that would preempt the reader inside its scan (holding the target's mmap_lock); on more
    CPUs, on a thread while the target is read. The pages read are the same."""
    import os

    from pmaps.collector import Process
    from pmaps.collector import parallel as P
    from pmaps.kernel import caps as capsmod

    if not capsmod.probe().sys_admin:
        pytest.skip("the observer correction needs CAP_SYS_ADMIN (kpagecount)")
    mine = os.sched_getaffinity(0)
    started = []  # threads collector.parallel.background started
    real = P._start_thread

    def counted(work):
        started.append(work)
        return real(work)

    def read(pid: int) -> np.ndarray:
        with Process(pid) as proc:
            return proc.pages().vpn

    with MemChild([f"a:anon:{64 * PAGE}"]) as mc:
        try:
            P._start_thread = counted
            both = read(mc.pid)
            threaded = len(started)
            os.sched_setaffinity(0, {min(mine)})
            one = read(mc.pid)
        finally:
            os.sched_setaffinity(0, mine)
            P._start_thread = real
    assert threaded == (1 if len(mine) > 1 else 0)
    assert len(started) == threaded  # none on one CPU
    assert len(one) == len(both) and (one == both).all()


def test_scan_windows_cover_every_vma_page_once():
    """Category scans go window by window: every VMA page in exactly one window, windows sorted and
    disjoint, each holding at most `window` pages of VMA, but a huge VMA (a reservation), alone."""
    from pmaps.kernel.pagemap import scan_windows

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        sizes = rng.choice([1, 3, 16, 100, 1000, 5000, 1 << 20], size=n)
        gaps = rng.integers(0, 50, size=n)
        starts = np.cumsum(gaps + np.concatenate([[0], sizes[:-1]])).astype(np.uint64) + 10
        ends = starts + sizes.astype(np.uint64)
        ws, we = scan_windows(starts, ends, window=256, huge=1 << 19)
        assert (ws < we).all() and (we[:-1] <= ws[1:]).all()
        pages = np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist())] or [np.zeros(0)])
        at = np.searchsorted(ws, pages, side="right") - 1
        assert (at >= 0).all() and (pages < we[at]).all()  # each page in the window that starts before it
        for a, b in zip(ws.tolist(), we.tolist()):
            inside = np.minimum(ends, b).astype(np.int64) - np.maximum(starts, a).astype(np.int64)
            held = int(inside[inside > 0].sum())
            huge = ((sizes > 1 << 19) & (starts < b) & (ends > a)).any()
            assert held <= 256 or huge, (a, b, held)
    ws, we = scan_windows(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64))
    assert len(ws) == len(we) == 0
