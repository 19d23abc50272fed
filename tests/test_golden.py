"""Golden tests for every human-facing format.

Most are rendered from a captured snapshot (golden/layout.npz). `shared`, `phys` and `wss` read the
live machine, so their goldens run the CLI on fixed synthetic inputs instead: the tests replace only
the read (Process/caps, iter_kpageflags, measure) and everything after it is the real command.

Re-bless after an intended change:  PMAPS_BLESS=1 python -m pytest tests/test_golden.py
Re-capture the input:               python tests/golden/capture.py  (root, swap on)
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pmaps import collector
from pmaps.analysis.wss import Ages, VmaWss, WssResult, totals
from pmaps.commands import phys as phys_cmd
from pmaps.commands import shared as shared_cmd
from pmaps.commands import wss as wss_cmd
from pmaps.kernel import pagemap as pmb
from pmaps.kernel.kpage import kpf_mask
from pmaps.kernel.maps import VmaTable
from pmaps.model import Known, Pages, Snapshot, Vma

GOLDEN = Path(__file__).parent / "golden"
INPUT = str(GOLDEN / "layout.npz")
U64 = np.uint64

CASES = {
    "rfc.txt": [INPUT],
    "all.txt": ["--flags=all", INPUT],
    "pfn_swap.txt": ["--pfn", "--swap", INPUT],
    "summary.txt": ["--summary", INPUT],
    "summary_k.txt": ["--summary", "-k", INPUT],
    "summary.csv": ["--summary", "--format", "csv", INPUT],
    "ranges.csv": ["--format", "csv", "--swap", INPUT],
    "folios.txt": ["--folios", INPUT],
    "legend.txt": ["--legend"],
}


def check(name: str, out: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(out)
    assert out == path.read_text(), f"{name} differs; PMAPS_BLESS=1 to accept"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(run, name):
    r = run(*CASES[name])
    assert r.code == 0, r.err
    check(name, r.out)


# -- pmaps shared: a server and two COW workers -----------------------------------------------------

KNOWN = Known(pfn=True, flags=True, count=True)
ZERO_PFN = 0x2000
F_ANON = kpf_mask("anon", "lru", "mmap", "uptodate", "swapbacked")
F_FILE = kpf_mask("lru", "mmap", "uptodate", "referenced")
F_ZERO = kpf_mask("zero_page", "mmap", "referenced", "uptodate")
TEXT = Vma(0x400000, 0x440000, "r-xp", 0, "08:01", 1234, "/usr/bin/server")
HEAP = Vma(0x1000000, 0x1800000, "rw-p", 0, "00:00", 0, "[heap]")
SHM = Vma(0x7f0000000000, 0x7f000012C000, "rw-s", 0, "00:05", 77, "/dev/shm/cache")
ZERO = Vma(0x7f0000200000, 0x7f0000210000, "r--p", 0, "00:00", 0, "")  # only the zero page: left out
SWAP = Vma(0x7f0000280000, 0x7f0000290000, "rw-p", 0, "00:00", 0, "")  # only swapped pages: left out
OWN = Vma(0x7f0000300000, 0x7f0000340000, "rw-p", 0, "00:00", 0, "")
STACK = Vma(0x7ffffffde000, 0x7ffffffff000, "rw-p", 0, "00:00", 0, "[stack]")


def region(vma: Vma, pfn0: int, flags: np.uint64, n: int | None = None, how: str = "present") -> Pages:
    """The first n pages of vma (all by default): PFNs pfn0.., the zero page, or swapped out."""
    n = vma.pages if n is None else n
    vpn = np.arange(n, dtype=U64) + U64(vma.start >> 12)
    if how == "swapped":
        pm = np.full(n, 1 << pmb.PM_SWAPPED, dtype=U64)
        return Pages(vpn, pm, np.zeros(n, np.uint16), np.zeros(n, U64), np.zeros(n, U64))
    pfn = np.full(n, ZERO_PFN, dtype=U64) if how == "zero" else np.arange(n, dtype=U64) + U64(pfn0)
    return Pages(vpn, pfn | U64(1 << pmb.PM_PRESENT), np.zeros(n, np.uint16), np.full(n, flags, dtype=U64),
                 np.ones(n, dtype=U64))


def snapshot(pid: int, comm: str, *parts: tuple) -> Snapshot:
    return Snapshot(pid, comm, [p[0] for p in parts], Pages.concat([region(*p) for p in parts]), KNOWN, time=0.0)


SNAPS = {
    100: snapshot(100, "server", (TEXT, 0x10000, F_FILE), (HEAP, 0x20000, F_ANON), (SHM, 0x30000, F_FILE),
                  (ZERO, 0, F_ZERO, None, "zero"), (SWAP, 0, 0, None, "swapped"), (STACK, 0x50000, F_ANON)),
    101: snapshot(101, "worker", (TEXT, 0x10000, F_FILE), (HEAP, 0x20000, F_ANON, 1536), (SHM, 0x30000, F_FILE),
                  (ZERO, 0, F_ZERO, None, "zero"), (OWN, 0x40000, F_ANON), (STACK, 0x60000, F_ANON)),
    102: snapshot(102, "worker", (TEXT, 0x10000, F_FILE), (HEAP, 0x20000, F_ANON, 16), (STACK, 0x70000, F_ANON)),
}


class FakeProcess:
    def __init__(self, pid: int, opts: object, caps: object) -> None:
        self.pid = pid
        snap = SNAPS[pid]
        self.comm, self.known, self.table, self.scanning = snap.comm, snap.known, VmaTable.of_vmas(snap.vmas), False

    def pages(self) -> Pages:
        return SNAPS[self.pid].pages

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def fake_shared(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(collector, "Process", FakeProcess)  # the command imports it when it runs
    mp.setattr(shared_cmd, "capsmod", SimpleNamespace(probe=lambda: SimpleNamespace(sys_admin=True)))


# -- pmaps phys: 3525 PFNs from 0x1000, read in chunks of 1000 (runs cross the chunk ends) -----------

PHYS = [
    (256, U64(1 << 32)),  # reserved: a raw bit, masked without --raw
    (1024, kpf_mask("buddy")),
    (1, F_ANON | kpf_mask("compound_head", "thp")),
    (511, F_ANON | kpf_mask("compound_tail", "thp")),
    (300, F_ANON | kpf_mask("active", "referenced")),
    (100, F_FILE),
    (4, kpf_mask("slab", "compound_head")),
    (4, kpf_mask("slab", "compound_tail")),
    (16, kpf_mask("pgtable")),
    (1, F_ZERO),
    (8, kpf_mask("lru", "dirty", "writeback", "uptodate", "reclaim")),
    (300, F_ANON | kpf_mask("active", "referenced")),
    (1000, kpf_mask("buddy")),
]
PHYS_FIRST = 0x1000
PHYS_FLAGS = np.concatenate([np.full(n, f, dtype=U64) for n, f in PHYS])


def fake_kpageflags(start: int = 0, end: int | None = None, chunk: int = 1000):
    lo = max(start, PHYS_FIRST)
    hi = PHYS_FIRST + len(PHYS_FLAGS) if end is None else min(end, PHYS_FIRST + len(PHYS_FLAGS))
    for a in range(lo, hi, chunk):
        yield a, PHYS_FLAGS[a - PHYS_FIRST : min(a + chunk, hi) - PHYS_FIRST]


def fake_phys(mp: pytest.MonkeyPatch) -> None:
    from pmaps.collector.observer import Observer

    mp.setattr(phys_cmd, "iter_kpageflags", fake_kpageflags)
    # pmaps' own pages are real PFNs: they must not fall into the synthetic range.
    mp.setattr(Observer, "private_pfns", staticmethod(lambda: np.zeros(0, dtype=np.uint64)))


# -- pmaps wss: clear_refs over 2 cycles of 2 s, and idle tracking over one --------------------------

LIBC = Vma(0x7f0000000000, 0x7f0000020000, "r--p", 0, "08:01", 99, "/usr/lib/libc.so.6")
GUARD = Vma(0x7f0000020000, 0x7f0000021000, "---p", 0, "00:00", 0, "")  # nothing resident: only with --all
ARENA = Vma(0x7f0000100000, 0x7f0000500000, "rw-p", 0, "00:00", 0, "")
WSS_ROWS = [VmaWss(TEXT, 64, 3, 40), VmaWss(HEAP, 2048, 700, 1500), VmaWss(LIBC, 32, 0, 0), VmaWss(GUARD, 0, 0, 0),
            VmaWss(ARENA, 1024, 1024, 1024), VmaWss(STACK, 12, 2, 5)]
WSS_RUNS = (np.array([0x1000, 0x7F0000100, 0x7FFFFFFFD], dtype=np.int64), np.array([700, 1024, 2], dtype=np.int64))


def wss_result(method: str, interval: float, cycles: int) -> WssResult:
    rows = WSS_ROWS if method == "clear_refs" else [VmaWss(r.vma, r.resident, r.located, None) for r in WSS_ROWS]
    ages = Ages()
    vpn = np.arange(3000, dtype=U64)
    if cycles == 2:
        ages.update(vpn, vpn % 3 == 0)
        vpn = np.arange(100, 3280, dtype=U64)  # 3180 pages resident at the end, as in the rows
    ages.update(vpn, vpn % 5 == 0)
    first = {"resident": 3100, "accessed": 2500, "located": 1400}
    done = [*([first] if cycles == 2 else []), totals(rows)]
    return WssResult(4242, "server", method, interval, rows, done, ages.histogram(), WSS_RUNS)


def fake_measure(pid, method="auto", interval=1.0, cycles=1, caps=None, note=None, pace=None) -> WssResult:
    assert pid == 4242 and method in ("clear_refs", "idle")
    return wss_result(method, interval, cycles)


def fake_wss(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(wss_cmd, "measure", fake_measure)


WSS = ["wss", "4242", "--method", "clear_refs", "--interval", "2", "--cycles", "2"]
SYNTHETIC = {
    "shared.txt": (fake_shared, ["shared", "100", "101", "102"]),
    "shared_k.txt": (fake_shared, ["shared", "-k", "100", "101", "102"]),
    "phys.txt": (fake_phys, ["phys", "--flags=all"]),
    "phys_ranges.txt": (fake_phys, ["phys", "--ranges"]),
    "phys_anon_k.txt": (fake_phys, ["phys", "-b", "anon", "--sort", "pages", "-k"]),
    "phys_thp_ranges.txt": (fake_phys, ["phys", "--ranges", "--flags=all", "-b", "thp,anon=thp,anon",
                                        "--pfn", "0x1400-0x1800"]),
    # --raw keeps what page-types -r keeps: compound head/tail on the THP and the slab folio.
    "phys_raw_ranges.txt": (fake_phys, ["phys", "--ranges", "--raw", "--pfn", "0x1400-0x18a0"]),
    "wss.txt": (fake_wss, WSS),
    "wss_k.txt": (fake_wss, [*WSS, "-k"]),
    "wss.csv": (fake_wss, [*WSS, "--format", "csv"]),
    "wss_idle_all.txt": (fake_wss, ["wss", "4242", "--method", "idle", "--interval", "0.5", "--all"]),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_golden_synthetic(run, monkeypatch, name):
    patch, argv = SYNTHETIC[name]
    patch(monkeypatch)
    r = run(*argv)
    assert r.code == 0, r.err
    check(name, r.out)
