"""Integration: real child processes with a known layout; pmaps against what was made and smaps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import pmaps
from helpers import PAGE, json_vmas, page_set, pmaps_cmd, runs_to_set, smaps_by_start, text_blocks
from memchild import MemChild
from pmaps.analysis.footprint import footprint

LAYOUT = [
    "a:anon:256K",  # 64 pages, every page written
    "s16:anon:1M:every=16",  # 256 pages, every 16th written
    "hole:anon:256K:skip=10-20",  # 64 pages, 10..19 untouched
    "z:zero:128K",  # 32 pages read only: the zero page
    "f:file:256K:read=8-16",  # 64-page file, pages 8..15 read
    "sh:shared:128K",  # 32 pages shared with a forked grandchild
    "cow:cow:128K",  # 32 pages of a file, even pages written (COW)
    "thp:thp:4M",  # MADV_HUGEPAGE, written
    "ml:mlock:128K",  # mlocked
    "r:reserve:64T",  # PROT_NONE MAP_NORESERVE reservation
]

IDLE_TRACKING = os.path.exists("/sys/kernel/mm/page_idle/bitmap") and os.geteuid() == 0
SCAN_MODES = [pytest.param({}, id="scan"), pytest.param({"PMAPS_NO_SCAN": "1"}, id="fallback")]


@pytest.fixture(scope="module")
def child():
    with MemChild(LAYOUT) as mc:
        yield mc


def region_ranges(child, name, out):
    reg = child.regions[name]
    vmas = json_vmas(out)
    assert reg["start"] in vmas, f"{name} VMA missing"
    v = vmas[reg["start"]]
    assert v["end"] == reg["end"]
    return v, v["ranges"]


@pytest.mark.parametrize("env", SCAN_MODES)
def test_exact_pages_per_region(child, env):
    out = pmaps_cmd("--format", "json", str(child.pid), env=env).stdout
    for name in ("a", "s16", "hole", "sh", "thp", "ml"):
        reg = child.regions[name]
        v, ranges = region_ranges(child, name, out)
        assert page_set(ranges, v["offset"] // PAGE) == runs_to_set(reg["touched"]), name
    # every 16th page: exactly one single-page range per written page
    _, ranges = region_ranges(child, "s16", out)
    assert [(r["index"], r["count"]) for r in ranges] == [(i, 1) for i in range(0, 256, 16)]
    # the hole: two runs, 0..9 and 20..63
    _, ranges = region_ranges(child, "hole", out)
    assert page_set(ranges) == set(range(10)) | set(range(20, 64))
    # the reservation: nothing
    _, ranges = region_ranges(child, "r", out)
    assert ranges == []


@pytest.mark.parametrize("env", SCAN_MODES)
def test_flags_and_mapcounts(child, env):
    out = pmaps_cmd("--format", "json", str(child.pid), env=env).stdout
    _, a = region_ranges(child, "a", out)
    assert all(r["mapcount"] == 1 and {"anon", "present", "exclusive"} <= set(r["names"]) for r in a)
    _, sh = region_ranges(child, "sh", out)
    assert sh and all(r["mapcount"] == 2 and "file" in r["names"] and "exclusive" not in r["names"] for r in sh)
    _, z = region_ranges(child, "z", out)
    assert page_set(z) == set(range(32)) and all("zero_page" in r["names"] for r in z)
    _, ml = region_ranges(child, "ml", out)
    assert all("unevictable" in r["names"] for r in ml)
    _, thp = region_ranges(child, "thp", out)
    assert all("thp" in r["names"] for r in thp)
    v, cow = region_ranges(child, "cow", out)
    anon = page_set([r for r in cow if "anon" in r["names"]], v["offset"] // PAGE)
    filep = page_set([r for r in cow if "anon" not in r["names"]], v["offset"] // PAGE)
    assert anon == set(range(0, 32, 2)) and filep == set(range(1, 32, 2))
    v, f = region_ranges(child, "f", out)
    got = page_set(f, v["offset"] // PAGE)
    assert set(range(8, 16)) <= got and all("file" in r["names"] for r in f)


def test_rfc_text_format(child):
    """The 2007 layout: a maps line per VMA, then INDEX COUNT FLAGS MAPCOUNT, ranges maximal."""
    out = pmaps_cmd(str(child.pid)).stdout
    maps = open(f"/proc/{child.pid}/maps").read().splitlines()
    blocks = text_blocks(out)
    assert [b[0] for b in blocks] == [m.rstrip() for m in maps]
    for _line, rows in blocks:
        for (i1, c1, f1, m1), (i2, _c2, f2, m2) in zip(rows, rows[1:]):
            assert i1 + c1 <= i2
            assert not (i1 + c1 == i2 and f1 == f2 and m1 == m2), "ranges are not maximal"
        for _i, _c, flags, mc in rows:
            assert len(flags) == 7 and all(ch in "YRAUPDW_?"[:] for ch in flags)
            assert flags[0] in ("Y_" if IDLE_TRACKING else "?")  # without idle page tracking Y cannot be told
            assert mc.isdigit()
    a = child.regions["a"]
    (row,) = [b for b in blocks if b[0].startswith(f"{a['start']:08x}-")]
    assert sum(c for _, c, _, _ in row[1]) == 64 and {m for *_, m in row[1]} == {"1"}


def test_pfn_view(child):
    out = pmaps_cmd("--pfn", "--format", "json", str(child.pid)).stdout
    _, thp = region_ranges(child, "thp", out)
    # A PMD-mapped THP: a head page at a 512-aligned PFN, then 511 physically contiguous tails.
    assert sum(r["count"] for r in thp) == 1024
    heads = [i for i, r in enumerate(thp) if "compound_head" in r["names"]]
    assert len(heads) == 2
    for i in heads:
        head, tail = thp[i], thp[i + 1]
        assert head["count"] == 1 and head["pfn"] % 512 == 0
        assert tail["pfn"] == head["pfn"] + 1 and tail["count"] == 511 and "compound_tail" in tail["names"]
    text = pmaps_cmd("--pfn", str(child.pid)).stdout
    assert all(len(line.split()) == 5 for line in text.splitlines() if "-" not in line.split()[0])
    plain = pmaps_cmd("--format", "json", str(child.pid)).stdout
    assert all("pfn" not in r for v in json_vmas(plain).values() for r in v["ranges"])  # only when asked


def _summary(pid, env=None):
    doc = json.loads(pmaps_cmd("--summary", "--format", "json", str(pid), env=env).stdout)
    (proc,) = doc["processes"]
    return {v["start"]: v for v in proc["vmas"]}, proc["total"]


@pytest.mark.parametrize("env", SCAN_MODES)
def test_totals_match_smaps(child, env):
    """Per VMA of the layout: RSS, PSS, USS, swap, AnonHugePages equal the kernel's smaps."""
    vmas, _ = _summary(child.pid, env)
    sm = smaps_by_start(child.pid)
    for name, reg in child.regions.items():
        k, got = sm[reg["start"]], vmas[reg["start"]]
        assert got["rss"] == k["Rss"], name
        assert got["pss"] >> 10 == k["Pss"] >> 10, name
        assert got["uss"] == k["Private_Clean"] + k["Private_Dirty"], name
        assert got["swap"] == k["Swap"], name
        assert got["anon_thp"] == k["AnonHugePages"], name
    assert vmas[child.regions["thp"]["start"]]["anon_thp"] == 4 << 20
    assert vmas[child.regions["z"]["start"]]["rss"] == 0
    assert vmas[child.regions["z"]["start"]]["zero_page"] == 32 * PAGE


def test_whole_process_against_smaps(child):
    """Every VMA of the child, libraries included. Other processes starting and exiting change
    the sharing of library pages, so retry until smaps reads the same before and after a scan."""
    keys = ("Rss", "Pss", "Swap", "AnonHugePages")

    def oracle():
        return {s: tuple(k[f] for f in keys) for s, k in smaps_by_start(child.pid).items()}

    bad: list = []
    for _attempt in range(20):
        before = oracle()
        # This runner is pmaps: it maps the libraries in both reads.
        snap = pmaps.collect(child.pid, include_self=True)
        after = oracle()
        if before != after:
            time.sleep(0.05)
            continue
        bad = []
        for vma, pages in snap.iter_vmas():
            fp = footprint(pages, snap.known)
            got = (fp["rss"], fp["pss"] >> 10, fp["swap"], fp["anon_thp"])
            rss, pss, swap, thp = after[vma.start]
            if got != (rss, pss >> 10, swap, thp):
                bad.append((vma.maps_line(), got, after[vma.start]))
        if not bad:
            return
    pytest.fail(f"never matched a stable smaps: {bad[:3] or 'smaps never stable'}")


def _rchar() -> int:
    for line in open("/proc/self/io"):
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@pytest.mark.parametrize("scan", [True, False], ids=["scan", "fallback"])
def test_reservation_costs_nothing(child, scan):
    """A 64 TiB reservation must not be read page by page (8 bytes a page would be 128 GiB)."""
    before = _rchar()
    t = time.perf_counter()
    snap = pmaps.collect(child.pid, scan=scan)
    dt = time.perf_counter() - t
    read = _rchar() - before
    assert read < 64 << 20, f"read {read} bytes"
    assert dt < 5
    assert len(snap.pages) > 0


def test_collect_api(child):
    snap = pmaps.collect(child.pid)
    assert snap.pid == child.pid and snap.known.pfn and snap.known.flags and snap.known.count
    a = child.regions["a"]
    idx = [i for i, v in enumerate(snap.vmas) if v.start == a["start"]][0]
    r = snap.ranges(idx)
    assert int(r.count.sum()) == 64
    pages = snap.pages
    sel = (pages.vpn >= a["start"] // PAGE) & (pages.vpn < a["end"] // PAGE)
    assert sel.sum() == 64 and (pages.pfn[sel] > 0).all() and (pages.kcount[sel] == 1).all()


def test_scan_and_fallback_agree(child):
    s1 = pmaps.collect(child.pid, scan=True)
    s2 = pmaps.collect(child.pid, scan=False)
    mine = {r["start"] for r in child.regions.values()}
    for snap in (s1, s2):
        snap.vmas = [v for v in snap.vmas if v.start in mine]
    f1 = {v.start: footprint(p, s1.known) for v, p in s1.iter_vmas()}
    f2 = {v.start: footprint(p, s2.known) for v, p in s2.iter_vmas()}
    for start in mine:
        for key in ("rss", "pss", "uss", "swap", "anon_thp"):
            assert f1[start][key] == f2[start][key], (start, key)


def test_scan_continues_past_full_vector():
    """More populated regions than one PAGEMAP_SCAN vector holds (and than the kernel's
    internal 512-region buffer): the walk resumes without losing or repeating any
    (the walk_end quirk, KERNEL.md)."""
    from pmaps.kernel.pagemap import VEC_LEN

    pages = 2 * (VEC_LEN + 4000)
    with MemChild([f"alt:anon:{pages * PAGE}:every=2"]) as mc:
        reg = mc.regions["alt"]
        snap = pmaps.collect(mc.pid, scan=True)
        sel = (snap.pages.vpn >= reg["start"] // PAGE) & (snap.pages.vpn < reg["end"] // PAGE)
        got = (snap.pages.vpn[sel] - reg["start"] // PAGE).tolist()
        assert got == list(range(0, pages, 2))


@pytest.mark.parametrize("fmt", ["text", "ndjson"])
def test_chunking_does_not_split_ranges(child, fmt):
    """Ranges are maximal across chunk boundaries: one read of the child, rendered from the
    collector's own small chunks and from pieces of every size, gives exactly the ranges of whole
    VMAs. One read only: the kernel flips idle/LRU bits between two reads (DAMON here)."""
    import io

    import numpy as np

    from pmaps.collector import Options, Process
    from pmaps.model import Pages, Snapshot
    from pmaps.render.pmaps import RangeWriter, ViewOptions

    with Process(child.pid, Options(chunk_pages=7)) as proc:  # batches of about 7 pages
        live = list(proc.chunks())
        snap = Snapshot(proc.pid, proc.comm, proc.vmas, Pages.concat([p for _, p in live]), proc.known)
    assert (np.diff(snap.pages.vpn.astype(np.int64)) > 0).all()  # in address order, no page twice
    whole = list(snap.chunks())
    assert len(live) > 2 * len(whole)  # the collector did cut VMAs into pieces

    def recut(n: int):
        for i, pages in whole:
            for lo in range(0, len(pages), n):
                yield i, pages.take(slice(lo, lo + n))

    def render(chunks) -> str:
        buf = io.StringIO()
        RangeWriter(buf, fmt, ViewOptions(full=True, with_pfn=True)).process(
            snap.pid, snap.comm, snap.vmas, chunks, lambda: snap.known, header=False)
        return buf.getvalue()

    want = render(iter(whole))
    for name, cut in (("collector", iter(live)), ("1", recut(1)), ("7", recut(7)), ("512", recut(512))):
        assert render(cut) == want, f"chunks of {name} pages split ranges"
    # The reference itself: every region of the child, and s16's 16 single-page ranges.
    s16 = child.regions["s16"]
    if fmt == "ndjson":
        vmas = {v["start"]: v for v in map(json.loads, want.splitlines())}
        assert {r["start"] for r in child.regions.values()} <= set(vmas)
        got = [(r["index"], r["count"]) for r in vmas[s16["start"]]["ranges"]]
    else:
        blocks = dict(text_blocks(want))
        assert {f"{r['start']:08x}-" for r in child.regions.values()} <= {ln[: ln.index("-") + 1] for ln in blocks}
        (rows,) = [rows for line, rows in blocks.items() if line.startswith(f"{s16['start']:08x}-")]
        got = [(i, c) for i, c, _, _ in rows]
    assert got == [(i, 1) for i in range(0, 256, 16)]


def test_hugetlb_outside_rss_in_summary():
    """hugetlb pages are present in pagemap but outside smaps' Rss/Pss: --summary agrees."""
    from pathlib import Path

    from helpers import ForkChild
    from test_top import _write

    path = "/proc/sys/vm/nr_hugepages"
    old = Path(path).read_text().strip()
    try:
        _write(path, str(int(old) + 2))
        if int(Path("/proc/meminfo").read_text().split("HugePages_Free:")[1].split()[0]) < 2:
            pytest.skip("could not reserve 2 hugepages (memory too fragmented)")
        fc = ForkChild("--workers", "0", "--cow", "64K", "--hugetlb", "1")
        try:
            pid = fc.pids[0]
            vmas, _ = _summary(pid)
            sm = smaps_by_start(pid)
            ht = [s for s, k in sm.items() if k.get("Private_Hugetlb", 0) + k.get("Shared_Hugetlb", 0)]
            assert len(ht) == 1
            got, k = vmas[ht[0]], sm[ht[0]]
            assert (got["rss"], got["pss"], got["uss"]) == (k["Rss"], k["Pss"], 0) == (0, 0, 0)
            assert got["hugetlb"] == 2 << 20
        finally:
            fc.close()
    finally:
        _write(path, old)


HEAP_1T = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
size = 1 << 40
a = libc.mmap(None, size, 3, 0x02 | 0x20 | 0x4000, -1, 0)  # rw, private anonymous, MAP_NORESERVE
(ctypes.c_char * 1).from_address(a + size // 2)[0] = b"x"  # one page written: smaps Rss > 0
print("ready", flush=True)
sys.stdin.readline()
"""


def test_fallback_streams_a_huge_vma():
    """Without PAGEMAP_SCAN a 1 TiB written-to VMA is read through (the kernel takes its time), in
    bounded memory, with progress on stderr."""
    p = subprocess.Popen([sys.executable, "-c", HEAP_1T], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so it would report the
        # test runner's own size (getrusage(2), "ru_maxrss").
        code = ("import re, sys; from pmaps.cli import main; rc = main(sys.argv[1:]); "
                "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
                "sys.stderr.write(f'peak {hwm}\\n'); sys.exit(rc)")
        r = subprocess.run([sys.executable, "-c", code, "--no-scan", "--summary", "--format", "json", str(p.pid)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        peak_kb = int(r.stderr.rsplit("peak ", 1)[1])
        assert peak_kb < 100 << 10, f"peak RSS {peak_kb} KiB"
        assert "reading pagemap without PAGEMAP_SCAN: 100%" in r.stderr
        (proc,) = json.loads(r.stdout)["processes"]
        big = [v for v in proc["vmas"] if v["end"] - v["start"] == 1 << 40]
        assert big and big[0]["rss"] == 4096
    finally:
        p.stdin.close()
        p.wait(10)


def test_one_reader_thread_on_one_cpu(child):
    """Pinned to one CPU pmaps reads a process's batches on one thread (two would only preempt each
    other inside the kernel's pagemap walk, holding the target's mmap_lock), and reads the same pages."""
    from pmaps.collector import Options, Process
    from pmaps.collector import process as P

    mine = os.sched_getaffinity(0)
    threads = []
    real = P.ordered_map

    def counted(fn, items, workers, ahead):
        threads.append(workers)
        return real(fn, items, workers, ahead)

    def read():
        with Process(child.pid, Options(chunk_pages=64)) as proc:
            return proc.pages(lookup=False).vpn

    try:
        P.ordered_map = counted
        both = read()
        os.sched_setaffinity(0, {min(mine)})
        assert P.reader_threads() == 1
        one = read()
    finally:
        os.sched_setaffinity(0, mine)
        P.ordered_map = real
    assert threads == ([2] if len(mine) > 1 else [])  # the pinned read used no worker threads
    assert P.reader_threads() == min(2, len(mine))
    assert len(one) > 64 and (one == both).all()
