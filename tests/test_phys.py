"""pmaps phys: kpageflags of the whole machine, page-types' -b semantics, runs of equal flags."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from memchild import MemChild
from pmaps.analysis import phys as P

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (/proc/kpageflags)")
A, L, T = 1 << 12, 1 << 5, 1 << 22  # anonymous, lru, thp


@pytest.mark.parametrize("expr,mask,bits", [
    ("anon,lru", A | L, P.ALL_BITS),  # any of them
    ("anon,lru=anon", A | L, A),  # exactly anon among the two
    ("anon,~lru", A | L, A),  # the same, with negation
    ("=anon,lru", P.ALL_BITS, A | L),  # exactly these bits
    ("compound", (1 << 15) | (1 << 16), P.ALL_BITS),
    ("a", 1 << 6, P.ALL_BITS),  # a prefix matches the first name in bit order: "active", not "anonymous"
    ("0x1000", A, P.ALL_BITS),
])
def test_parse_bits_like_page_types(expr, mask, bits):
    assert P.parse_bits(expr) == P.BitsFilter(mask, bits)


def test_bits_filter_semantics():
    flags = np.array([0, A, L, A | L, A | T], dtype=np.uint64)
    sel = lambda *e: P.select(flags, [P.parse_bits(x) for x in e]).tolist()
    assert sel("anon,lru") == [False, True, True, True, True]
    assert sel("anon,~lru") == [False, True, False, False, True]
    assert sel("=anon") == [False, True, False, False, False]
    assert sel("anon", "~thp,lru=lru") == [False, False, False, True, False]  # several -b: AND
    with pytest.raises(ValueError):
        P.parse_bits("nosuchflag")


def test_summarize_groups_and_runs_across_chunks():
    flags = np.array([A, A, A, L, L, 0, A, A], dtype=np.uint64)
    chunks = [(100, flags[:2]), (102, flags[2:5]), (105, flags[5:])]
    s = P.summarize(chunks, [], ranges=True)
    assert s.groups == {A: 5, L: 2, 0: 1} and s.scanned == 8
    start, length, f = s.runs()
    assert list(zip(start.tolist(), length.tolist(), f.tolist())) == [(100, 3, A), (103, 2, L), (105, 1, 0),
                                                                       (106, 2, A)]
    s = P.summarize(chunks, [P.parse_bits("anon")], ranges=True)
    start, length, _ = s.runs()
    assert list(zip(start.tolist(), length.tolist())) == [(100, 3), (106, 2)]
    assert P.symbolic(A | L) == "_____l______a______________"


def test_pfn_range_parse():
    assert P.parse_pfn_range("0x10-0x20") == (16, 32)
    assert P.parse_pfn_range("5") == (5, 6)
    assert P.parse_pfn_range("7-") == (7, None)
    with pytest.raises(ValueError):
        P.parse_pfn_range("9-3")


@root
def test_whole_machine(run):
    """Every PFN is counted once; anon pages of a child we made are found under anon flags."""
    with MemChild(["a:anon:8M", "t:thp:4M"]):
        doc = json.loads(run("phys", "--format", "json").out)
        total = sum(r["pages"] for r in doc["rows"])
        assert total == doc["total"]["pages"] == doc["scanned_pfns"] - doc["excluded_pfns"]
        mem = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0]) * 1024
        assert total * 4096 >= mem  # every PFN up to the end of memory, holes included
        anon = json.loads(run("phys", "-b", "anon", "--format", "json").out)
        assert anon["total"]["pages"] >= (12 << 20) // 4096
        assert all("anonymous" in r["names"] for r in anon["rows"])
        thp = json.loads(run("phys", "-b", "thp,anon=thp,anon", "--format", "json").out)
        assert thp["total"]["pages"] >= 1024


@root
def test_ranges_and_pfn_window(run):
    r = run("phys", "--ranges", "--pfn", "0x1000-0x3000", "--format", "json")
    doc = json.loads(r.out)
    assert sum(x["pages"] for x in doc["rows"]) == 0x2000 == doc["scanned_pfns"]
    rows = doc["rows"]
    assert rows[0]["pfn"] == 0x1000
    for a, b in zip(rows, rows[1:]):  # maximal: contiguous neighbours differ in flags
        assert a["pfn"] + a["pages"] == b["pfn"] and a["flags"] != b["flags"]
    text = run("phys", "--ranges", "--pfn", "0x1000-0x3000").out.splitlines()
    assert text[0].split() == ["PFN", "PAGES", "SYMBOLIC"] and len(text) == len(rows) + 1


def test_unprivileged_phys():
    from helpers import pmaps_cmd

    if os.geteuid() != 0:
        pytest.skip("needs root to switch to nobody")
    r = pmaps_cmd("phys", user=True, check=False)
    assert r.returncode == 4 and "kpageflags" in r.stderr


@root
def test_phys_chart(run, tmp_path):
    pytest.importorskip("matplotlib", reason="charts need the plot extra")
    out = tmp_path / "phys.png"
    assert run("phys", "--pfn", "0x100000-0x140000", "--pie", str(out)).code == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_well_known_hides_compound_except_hugetlb():
    """page-types' default (well_known_flags): THP/large-folio head and tail group with order-0 pages,
    hugetlb keeps its head/tail, kernel-internal bits are hidden; --raw keeps all."""
    head, tail, huge, thp, anon, mlocked = 1 << 15, 1 << 16, 1 << 17, 1 << 22, 1 << 12, 1 << 33
    flags = np.array([anon | thp | head, anon | thp | tail, anon, huge | head, huge | tail, anon | mlocked],
                     dtype=np.uint64)
    got = P.well_known(flags).tolist()
    assert got == [anon | thp, anon | thp, anon, huge | head, huge | tail, anon]
    s = P.summarize([(0, flags)], [P.parse_bits("compound")])
    assert s.groups == {huge | head: 1, huge | tail: 1}  # -b compound: hugetlb only, as page-types
    assert P.summarize([(0, flags)], [P.parse_bits("compound")], raw=True).scanned == 6


def test_exclude_leaves_pfns_out():
    flags = np.array([1 << 12, 1 << 12, 1 << 10, 1 << 12], dtype=np.uint64)
    s = P.summarize([(100, flags)], [], exclude=np.array([5, 101, 103, 900], dtype=np.uint64), ranges=True)
    assert s.groups == {1 << 12: 1, 1 << 10: 1} and s.excluded == 2 and s.scanned == 4


def test_phys_leaves_pmaps_own_pages_out(run):
    """pmaps' own private memory (tens of MB of Python and numpy) is not in the machine's view."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (kpageflags)")
    from pmaps.collector.observer import Observer

    mine = Observer.private_pfns()
    assert len(mine) > 1000
    lo, hi = int(mine.min()), int(mine.max()) + 1
    a = json.loads(run("phys", "--pfn", f"{lo}-{hi}", "--format", "json").out)
    b = json.loads(run("phys", "--pfn", f"{lo}-{hi}", "--format", "json", "--include-self").out)
    # the same PFN range read twice: pmaps' own pages are in b, not in a (some slack: pages move)
    assert b["total"]["pages"] - a["total"]["pages"] > len(mine) // 2
