"""pmaps wss with the clear_refs and damon methods: a child touches known pages during the interval."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import pmaps.analysis.wss as wss
from helpers import ROOT, smaps_by_start
from memchild import MemChild
from pmaps.analysis.wss import Ages, located, runs
from pmaps.collector import collect, parallel
from pmaps.kernel import damon
from pmaps.kernel.clear_refs import clear_refs
from pmaps.kernel.idle import IDLE_BITMAP, IdleBitmap, idle_bits, idle_words
from pmaps.model import Pages

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags, clear_refs of a child)")
LAYOUT = ["a:anon:1M", "b:anon:1M:skip=0-256", "c:anon:512K"]


def region_vpns(mc, snap, acc, name):
    r = mc.regions[name]
    sel = acc & (snap.pages.vpn >= r["start"] >> 12) & (snap.pages.vpn < r["end"] >> 12)
    return set((snap.pages.vpn[sel] - (r["start"] >> 12)).tolist())


@needs_root
def test_located_pages_exact():
    """Kernel-seen accesses (GUP reads) and first touches are found page by page, nothing else."""
    with MemChild(LAYOUT) as mc:
        before = collect(mc.pid)
        clear_refs(mc.pid)
        mc.cmd("read a 100 103")  # MADV_POPULATE_READ: GUP marks the folios accessed
        mc.cmd("touch b 7 12")  # never-touched pages: faulted in now
        after = collect(mc.pid)
    acc = located(before.pages, after.pages)
    assert region_vpns(mc, after, acc, "a") == {100, 101, 102}
    assert region_vpns(mc, after, acc, "b") == set(range(7, 12))
    assert region_vpns(mc, after, acc, "c") == set()


def _touch_after(mc, real, evict=False):
    """`real` (the call that starts an interval: clear_refs, mark_idle), then the child's CPU
    writes: they land inside the interval whatever the timing (no sleep guesses when pmaps cleared).
    evict: first write 32 MiB elsewhere, so that no TLB entry for the pages written survives (x86
    clears young bits without a TLB flush: a write through a cached translation sets none)."""
    calls = []

    def hook(*args, **kw):
        real(*args, **kw)
        calls.append(args)
        if evict:
            mc.cmd("touch tlb")
        mc.cmd("touch a 10 30")  # 20 pages written by the CPU (memset)
        mc.cmd("touch c 0 3")

    return hook, calls


@needs_root
def test_cli_counts_cpu_writes_exactly(run, monkeypatch):
    """CPU writes to resident pages: per-VMA ACCESSED is smaps' Referenced, exactly (read again after
    the run: nothing touched the child since), and counts every page written.

    The TLB eviction is what makes the second part hold: clear_refs 1 clears the pte young bits
    without a TLB flush (fs/proc/task_mmu.c clear_refs_write flushes for soft-dirty only; x86 skips
    it on purpose, arch/x86/mm/pgtable.c ptep_clear_flush_young), and a write through a translation
    the CPU kept since the pages were written at set-up sets no young bit: smaps' Referenced and
    ACCESSED missed 1 to 18 of the 20 pages when the child wrote them just before clear_refs. Young
    bits may still be taken by reclaim: an attempt that lost one is retried."""
    seen = []
    for _attempt in range(5):
        with MemChild([*LAYOUT, "tlb:anon:32M"]) as mc:
            hook, calls = _touch_after(mc, clear_refs, evict=True)
            monkeypatch.setattr(wss, "clear_refs", hook)
            r = run("wss", str(mc.pid), "--interval", "0.2", "--method", "clear_refs", "--format", "json")
            smaps = smaps_by_start(mc.pid)
        assert r.code == 0, r.err
        assert [c[0] for c in calls] == [mc.pid]  # one cycle: pmaps cleared once, then the writes
        doc = json.loads(r.out)
        assert doc["method"] == "clear_refs" and doc["limits"]
        by = {v["start"]: v for v in doc["vmas"]}
        starts = [mc.regions[k]["start"] for k in "acb"]
        got = tuple(by.get(s, {"accessed": 0})["accessed"] for s in starts)
        assert got == tuple(smaps.get(s, {}).get("Referenced", 0) // 4096 for s in starts)
        if got == (20, 3, 0):
            return
        seen.append(got)
    pytest.fail(f"accessed pages (a, c, b) never (20, 3, 0): {seen}")


def test_ages_histogram():
    ages = Ages()
    v = np.arange(10, dtype=np.uint64)
    ages.update(v, np.array([1] * 4 + [0] * 6, dtype=bool))
    ages.update(v, np.array([0] * 2 + [1] * 2 + [0] * 6, dtype=bool))
    ages.update(v[:9], np.array([0] * 9, dtype=bool))
    assert ages.histogram() == [("1", 0), ("2", 2), ("3", 2), ("never (>3)", 5)]


def test_idle_bitmap_encoding():
    """The idle bitmap's words and masks, and the one shared decoder `idle_bits` (IdleBitmap.read_idle)."""
    pfns = np.array([0, 1, 63, 64, 130, 129], dtype=np.uint64)
    words, masks = idle_words(pfns)
    assert words.tolist() == [0, 1, 2]
    assert masks.tolist() == [(1 << 0) | (1 << 1) | (1 << 63), 1, (1 << 2) | (1 << 1)]
    # the bitmap read back, one word per PFN (the shared decoder of IdleBitmap.read_idle)
    read_back = np.array([1 << 63, 1, 1 << 1], dtype=np.uint64)
    back = idle_bits(read_back[np.searchsorted(words, pfns >> np.uint64(6))], pfns)
    assert back.tolist() == [False, False, True, True, False, True]


def test_idle_unavailable_is_one_line(run):
    if os.path.exists(IDLE_BITMAP) and os.geteuid() == 0:
        pytest.skip(f"idle page tracking is available here ({IDLE_BITMAP}): nothing to refuse")
    r = run("wss", str(os.getpid()), "--method", "idle")
    assert r.code == 5 and r.err.count("\n") == 1


def _idle_unusable() -> str | None:
    if not os.path.exists(IDLE_BITMAP):
        return f"no {IDLE_BITMAP} (kernel without CONFIG_IDLE_PAGE_TRACKING)"
    return None if os.geteuid() == 0 else f"needs root ({IDLE_BITMAP})"


@pytest.mark.skipif(_idle_unusable() is not None,
                    reason=f"idle page tracking path NOT tested: {_idle_unusable()}")
def test_idle_locates_cpu_writes_page_by_page(run, monkeypatch):
    """--method idle: CPU writes to already-resident pages are found exactly, page by page."""
    with MemChild(LAYOUT) as mc:
        hook, calls = _touch_after(mc, IdleBitmap.mark_idle)
        monkeypatch.setattr(IdleBitmap, "mark_idle", hook)
        r = run("wss", str(mc.pid), "--interval", "0.2", "--method", "idle", "--format", "json")
    assert r.code == 0, r.err
    assert len(calls) == 1
    doc = json.loads(r.out)
    assert doc["method"] == "idle" and doc["limits"]
    by = {v["start"]: v for v in doc["vmas"]}
    assert _located(mc, by, "a") == set(range(10, 30))
    assert _located(mc, by, "b") == set()
    assert _located(mc, by, "c") == {0, 1, 2}


def _located(mc, by, name):
    """Pages (relative to the region) in a wss JSON document's located_runs for region `name`."""
    v = by.get(mc.regions[name]["start"])
    if v is None:
        return set()
    base = mc.regions[name]["start"]
    return {(a - base) // 4096 + i for a, n in v["located_runs"] for i in range(n)}


NR_KDAMONDS = "/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds"


def test_damon_locates_cpu_writes_page_by_page():
    """--method damon: CPU writes to already-resident pages are found exactly, page by page."""
    why = damon.usable()
    if why is not None:
        pytest.skip(f"DAMON path NOT tested: {why}")
    touches = ["touch a 10 30", "touch a 200 201", "touch a 255 256", "touch c 0 3", "touch c 64 66"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with MemChild(LAYOUT) as mc:
        p = subprocess.Popen([sys.executable, "-m", "pmaps", "wss", str(mc.pid), "--interval", "2", "--method", "damon",
                              "--format", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = threading.Event()

        def toucher() -> None:  # until pmaps exits, so every touch also falls inside its interval
            while not done.is_set() and p.poll() is None:
                for t in touches:
                    mc.cmd(t)
                time.sleep(0.05)

        th = threading.Thread(target=toucher)
        th.start()
        try:
            out, err = p.communicate(timeout=30)
        finally:
            done.set()
            th.join()
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 0, err
    with open(NR_KDAMONDS) as f:
        assert f.read().strip() == "0"  # the kdamond was turned off and removed
    doc = json.loads(out)
    assert doc["method"] == "damon" and doc["limits"]
    by = {v["start"]: v for v in doc["vmas"]}

    assert _located(mc, by, "a") == set(range(10, 30)) | {200, 255}
    assert _located(mc, by, "b") == set()
    assert _located(mc, by, "c") == {0, 1, 2, 64, 65}
    assert by[mc.regions["a"]["start"]]["resident"] == 256  # all resident before: nothing was faulted in


def test_damon_in_use_is_refused(run):
    if os.geteuid() != 0 or not os.path.exists(NR_KDAMONDS):
        pytest.skip(f"DAMON refusal NOT tested: {'needs root' if os.path.exists(NR_KDAMONDS) else 'no ' + NR_KDAMONDS}")
    with open(NR_KDAMONDS) as f:
        claimed_by_us = f.read().strip() == "0"
    if claimed_by_us:  # nobody uses DAMON: play the other user for a moment
        with open(NR_KDAMONDS, "w") as f:
            f.write("1")
    try:
        r = run("wss", str(os.getpid()), "--method", "damon")
    finally:
        if claimed_by_us:
            with open(NR_KDAMONDS, "w") as f:
                f.write("0")
    assert r.code == 5 and "DAMON is in use" in r.err and r.err.count("\n") == 1


def test_idle_and_damon_readbacks_decode_alike():
    """The page-exact readbacks give `located` the same per-page idle flags: the idle bitmap through
    the shared decoder idle_bits, DAMON's tried regions (one region per PFN) through accessed_pages."""
    pfns = np.array([5, 6, 7, 63, 64, 65, 130, 200, 4096], dtype=np.uint64)
    accessed = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    # The bitmap after the interval: every PFN marked idle, the kernel cleared the accessed ones.
    words, masks = idle_words(pfns)
    bitmap = dict(zip(words.tolist(), masks.tolist()))
    for w, m in zip(*(x.tolist() for x in idle_words(pfns[accessed]))):
        bitmap[w] &= ~m
    read_back = np.array([bitmap[p >> 6] for p in pfns.tolist()], dtype=np.uint64)
    idle_from_bitmap = idle_bits(read_back, pfns)
    # DAMON: one region per resident PFN; tried_regions lists those with nr_accesses >= 1.
    first, end, group = damon.page_regions(np.unique(pfns))
    assert group == 1
    hit = set(pfns[accessed].tolist())
    tried = damon.decode_tried([(b"%d\n" % (f * 4096), b"%d\n" % (e * 4096), b"2\n")
                                for f, e in zip(first.tolist(), end.tolist()) if f in hit])
    idle_from_damon = ~damon.accessed_pages(pfns, tried)
    assert idle_from_bitmap.tolist() == idle_from_damon.tolist() == (~accessed).tolist()
    # ... so both locate the same pages (all resident before and after).
    pm = np.uint64(1 << 63) | pfns
    pages = Pages(np.arange(100, 100 + len(pfns), dtype=np.uint64), pm, np.zeros(len(pfns), dtype=np.uint16))
    assert located(pages, pages, idle=idle_from_bitmap).tolist() == accessed.tolist()
    assert located(pages, pages, idle=idle_from_damon).tolist() == accessed.tolist()


def test_damon_regions_and_decoding():
    first, end, group = damon.page_regions(np.array([5, 6, 9], dtype=np.uint64))
    assert (first.tolist(), end.tolist(), group) == ([5, 6, 9], [6, 7, 10], 1)
    first, end, group = damon.page_regions(np.arange(10, 17, dtype=np.uint64), limit=3)
    assert (first.tolist(), end.tolist(), group) == ([10, 13, 16], [13, 16, 17], 3)
    tried = damon.decode_tried([(b"40960\n", b"45056\n", b"3\n"), (b"20480\n", b"24576\n", b"1\n"),
                                (b"53248\n", b"61440\n", b"0\n")])
    assert tried.tolist() == [[20480, 24576, 1], [40960, 45056, 3], [53248, 61440, 0]]
    pfns = np.array([10, 5, 4, 11, 13, 14], dtype=np.uint64)
    assert damon.accessed_pages(pfns, tried).tolist() == [True, True, False, False, False, False]
    assert damon.accessed_pages(pfns, damon.decode_tried([])).tolist() == [False] * 6


def test_located_runs_cut_at_vmas():
    vpn = np.array([1, 2, 3, 4, 7, 8], dtype=np.uint64)
    sel = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    assert [x.tolist() for x in runs(vpn, sel)] == [[1, 4, 7], [2, 1, 2]]
    assert [x.tolist() for x in runs(vpn, sel, np.array([8]))] == [[1, 4, 7, 8], [2, 1, 1, 1]]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags: the zero page)")
def test_zero_page_is_not_resident(run):
    """A region that only maps the zero page is not resident, as smaps says (Rss 0)."""
    with MemChild(["z:zero:64K", "a:anon:64K"]) as mc:
        r = run("wss", str(mc.pid), "--interval", "0.05", "--method", "clear_refs", "--format", "json", "--all")
        assert r.code == 0, r.err
        by = {v["start"]: v for v in json.loads(r.out)["vmas"]}
        assert by[mc.regions["z"]["start"]]["resident"] == 0
        assert by[mc.regions["a"]["start"]]["resident"] == 16


@needs_root
def test_max_cpu_stretches_the_interval(run):
    """--max-cpu 5 with a 1 ms interval: a cycle's work costs more than 50 us of CPU, so every cycle
    lasts longer than asked (its CPU x 20), and the output says so; without it, the interval stands."""
    with MemChild(LAYOUT) as mc:
        args = ["wss", str(mc.pid), "--interval", "0.001", "--cycles", "2", "--method", "clear_refs"]
        r = run(*args, "--max-cpu", "5", "--format", "json")
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        assert doc["interval"] == 0.001 and len(doc["intervals"]) == 2
        assert all(w > 0.001 for w in doc["intervals"]), doc["intervals"]
        assert "to keep the CPU budget, cycles last" in r.err
        text = run(*args, "--max-cpu", "5")
        assert text.code == 0, text.err
        assert "by the CPU budget)" in text.out.splitlines()[0]
        plain = run(*args, "--format", "json")
        assert plain.code == 0, plain.err
        assert json.loads(plain.out)["intervals"] == [0.001, 0.001]
        assert "CPU budget" not in plain.err


@needs_root
def test_pace_gets_each_cycles_cpu():
    """measure(pace=...): pace sees the CPU seconds of the initial snapshot, then of each cycle's
    work, and its answer is the next cycle's interval (never below `interval`)."""
    costs: list[float] = []

    def pace(cost: float) -> float:
        costs.append(cost)
        return 0.02 if len(costs) == 1 else 0.0

    with MemChild(LAYOUT) as mc:
        res = wss.measure(mc.pid, "clear_refs", interval=0.01, cycles=3, pace=pace)
    assert len(costs) == 3 and all(c > 0 for c in costs)
    assert res.intervals == [0.02, 0.01, 0.01]


def test_rows_as_columns_match_the_rows():
    """WssRows (measure's per-VMA columns) reads back as the VmaWss rows it was made from, and the
    view's selection, sorting and text are those of the rows (golden files hold the layout)."""
    import io

    from pmaps.analysis.wss import VmaWss, WssResult, per_vma, totals
    from pmaps.kernel.maps import Vma, decode_table
    from pmaps.render.wss import WssView

    vmas = [Vma(0x1000 * (2 * i + 1), 0x1000 * (2 * i + 2 + i % 3), "rw-p", 0, "00:00", 0, f"[v{i}]" * (i % 2))
            for i in range(40)]
    table = decode_table("".join(v.maps_line() + "\n" for v in vmas).encode())
    rng = np.random.default_rng(7)
    vpn = np.unique(np.concatenate([np.arange(s, e) for s, e in zip(table.start_page.tolist(),
                                                                     table.end_page.tolist())]))
    bounds = np.stack([np.searchsorted(vpn, table.start_page), np.searchsorted(vpn, table.end_page)], axis=1)
    acc, pres = rng.random(len(vpn)) < 0.4, rng.random(len(vpn)) < 0.7
    ref = {v.start: int(rng.integers(0, 4)) << 12 for v in vmas[::2]}
    # smaps' order, one start listed twice (the last counts): per_vma takes (starts, bytes) columns
    keys = np.array([vmas[0].start, *ref], dtype=np.uint64)
    cols = per_vma(table, bounds, acc, pres, (keys, np.array([1 << 30, *ref.values()], dtype=np.int64)))
    rows = [VmaWss(v, int(pres[lo:hi].sum()), int(acc[lo:hi].sum()), ref.get(v.start, 0) >> 12)
            for v, (lo, hi) in zip(vmas, bounds.tolist())]
    assert list(cols) == rows and cols[3] == rows[3] and cols[-1] == rows[-1] and cols[2:4] == rows[2:4]
    assert totals(cols) == totals(rows)
    for args in ((False, "address", 0), (True, "accessed", 0), (False, "resident", 7)):
        texts = []
        for r in (cols, rows):
            out = io.StringIO()
            WssView.build(WssResult(1, "x", "clear_refs", 1.0, r, [totals(r)]), *args).text(out, "human")
            texts.append(out.getvalue())
        assert texts[0] == texts[1]
        shown = WssView.build(WssResult(1, "x", "clear_refs", 1.0, rows, []), *args).rows
        want = [r for r in rows if args[0] or r.resident or r.accessed]
        if args[1] != "address":
            want.sort(key=lambda r: (-getattr(r, args[1]), r.vma.start))
        assert list(shown) == want[:args[2] or None]


def _smaps_text(refs: list[int], *, kb_width: int = 8) -> bytes:
    """smaps as 6.x prints it (show_smap: 16-character names, numbers at least 8 wide), one VMA per
    entry of `refs` (its Referenced in kB; Size and Rss a little more)."""
    def line(name: str, kb: int) -> bytes:
        return f"{name + ':':<16}{kb:>{kb_width}} kB\n".encode()

    out = []
    for i, ref in enumerate(refs):
        start = 0x7F0000000000 + i * 0x10000
        out.append(f"{start:08x}-{start + 0x8000:08x} rw-p 00000000 00:00 0{' ' * 20}[v{i}]\n".encode())
        out += [line("Size", 32 + ref), line("KernelPageSize", 4), line("Rss", ref + 4), line("Pss", ref),
                line("Referenced", ref), line("Anonymous", ref + 4), line("Swap", 0), b"THPeligible:    0\n",
                b"VmFlags: rd wr mr mw me ac \n"]
    return b"".join(out)


def test_decode_smaps_nonzero_matches_the_full_decoder():
    """decode_smaps_nonzero gives decode_smaps' (start, bytes) of every VMA whose field is not 0, in
    order: all zero (the literal counts), a few (looked back for their headers; the first VMA's
    header at the text's start; the field Size itself), many (the two-scan decoder), numbers wider
    than the kernel's 8 columns, and text not of smaps' shape (a VMA without Size)."""
    from pmaps.kernel.smaps import decode_smaps, decode_smaps_nonzero

    rng = np.random.default_rng(3)
    many = rng.integers(0, 3, 700).tolist()
    cases = [_smaps_text([0] * 50), _smaps_text([4] + [0] * 30 + [8, 0, 12]), _smaps_text(many),
             _smaps_text([0, 123456789, 0, 5], kb_width=8), _smaps_text([0, 7, 0], kb_width=12), b"",
             _smaps_text([0, 4, 8]).replace(b"Size:", b"Sz:", 2)]
    for data in cases:
        rows = decode_smaps(data)
        for name in ("Referenced", "Size", "Swap", "Rss"):
            want = [(r["start"], r[name]) for r in rows if r.get(name, 0)]
            starts, values = decode_smaps_nonzero(data, name)
            assert starts.dtype == np.uint64 and values.dtype == np.int64
            assert list(zip(starts.tolist(), values.tolist())) == want, (name, data[:80])


def test_decode_smaps_nonzero_few_without_the_full_decoder(monkeypatch):
    """A few non-zero fields (the first VMA's among them, and Size, each VMA's first field) are
    found without decoding every VMA."""
    import pmaps.kernel.smaps as smaps

    data = _smaps_text([4] + [0] * 30 + [8, 0, 12])
    rows = smaps.decode_smaps(data)
    want = {name: [(r["start"], r[name]) for r in rows if r[name]] for name in ("Referenced", "Size")}
    monkeypatch.setattr(smaps, "decode_smaps_column", None)  # any call fails
    for name in ("Referenced", "Size"):
        starts, values = smaps.decode_smaps_nonzero(data, name)
        assert list(zip(starts.tolist(), values.tolist())) == want[name]


def test_smaps_nonzero_streams(monkeypatch):
    """decode_smaps_nonzero of each of smaps_pieces' pieces over reads cut anywhere (what wss
    decodes): the whole text's non-zero fields."""
    import pmaps.kernel.smaps as smaps

    text = _smaps_text([0] * 40 + [4, 0, 0, 8] + [0] * 40 + [12])
    want = smaps.decode_smaps_nonzero(text, "Referenced")
    assert len(want[0]) == 3
    for size in (1, 7, 500, len(text)):
        monkeypatch.setattr(smaps, "_PIECE", size * 3)
        chunks = [text[i:i + size] for i in range(0, len(text), size)]
        monkeypatch.setattr(smaps.procfs, "read_chunks", lambda pid, name, started=False, c=chunks: iter(c))
        parts = [smaps.decode_smaps_nonzero(p, "Referenced") for p in smaps.smaps_pieces(1)]
        got = [np.concatenate([p[i] for p in parts]) for i in (0, 1)]
        assert [x.tolist() for x in got] == [x.tolist() for x in want], size


def test_read_chunks_is_the_file():
    """procfs.read_chunks (reads into one reused buffer) gives the file's bytes, in chunks of at most
    `size` bytes."""
    from pmaps.kernel import procfs

    with MemChild(LAYOUT) as mc:
        whole = procfs.read_file(mc.pid, "maps")
        for size in (1, 100, 5000, 1 << 20):
            chunks = list(procfs.read_chunks(mc.pid, "maps", size=size))
            assert b"".join(chunks) == whole and max(map(len, chunks)) <= size


@needs_root
def test_measure_locates_kernel_accesses_and_faults(monkeypatch):
    """measure (clear_refs): GUP reads (PG_referenced) and first touches are located page by page,
    CPU writes counted per VMA by smaps; kpageflags are read only in VMAs smaps counted, which holds
    every page a REFERENCED flag could locate."""
    read = []

    def region_pages(self, regs):
        read.append(regs.copy())
        return real(self, regs)

    from pmaps.collector import Process

    real = Process.region_pages
    monkeypatch.setattr(Process, "region_pages", region_pages)
    with MemChild([*LAYOUT, "d:anon:256K"]) as mc:
        def hook(pid, what=1):
            clear_refs(pid, what)
            mc.cmd("read a 100 103")  # MADV_POPULATE_READ: GUP marks the folios accessed
            mc.cmd("touch b 7 12")  # never touched: faulted in now
            mc.cmd("touch c 0 3")  # CPU writes to resident pages: young ptes only

        monkeypatch.setattr(wss, "clear_refs", hook)
        res = wss.measure(mc.pid, "clear_refs", interval=0.05)
    by = {r.vma.start: r for r in res.rows}
    a, b, c, d = (by[mc.regions[k]["start"]] for k in "abcd")
    first, n = res.runs
    got = set(arange_pages(first, n))

    def rel(name):
        r = mc.regions[name]
        lo, hi = r["start"] >> 12, r["end"] >> 12
        return {v - lo for v in got if lo <= v < hi}

    assert rel("a") == {100, 101, 102} and rel("b") == set(range(7, 12)) and rel("c") == set() and rel("d") == set()
    assert (a.located, b.located, c.located, d.located) == (3, 5, 0, 0)
    assert a.counted >= 3 and d.counted == 0 and d.resident == 64
    if os.environ.get("PMAPS_NO_SCAN"):  # the pagemap fallback reads every page's flags
        return
    # kpageflags were read for VMAs smaps counted (a, c among them), not for d (nothing referenced)
    pages = {p for regs in read for s, e in regs[:, :2].tolist() for p in range(s, e)}
    d_pages = set(range(mc.regions["d"]["start"] >> 12, mc.regions["d"]["end"] >> 12))
    assert not pages & d_pages and (mc.regions["a"]["start"] >> 12) + 100 in pages


def arange_pages(first, n):
    return [int(f) + i for f, k in zip(first.tolist(), n.tolist()) for i in range(k)]


def test_on_thread_hands_over_in_order_and_raises_there():
    """on_thread runs the iterator on a thread from the call on (before anything is taken), hands its
    items over in order and raises its error where they are taken, after the items before it."""
    made = threading.Event()

    def items():
        yield 1
        yield 2
        made.set()
        raise ValueError("read failed")

    got = parallel.on_thread(items())
    assert made.wait(10)  # produced without being asked
    taken = []
    with pytest.raises(ValueError, match="read failed"):
        for x in got:
            taken.append(x)
    assert taken == [1, 2]
    assert list(parallel.on_thread(iter(range(5)))) == [0, 1, 2, 3, 4]


def test_on_thread_shortens_the_switch_interval_while_it_reads():
    """While on_thread's thread runs, the GIL's switch interval is short (the thread takes the GIL
    back after each chunk of reads); it is restored when the thread ends, by an error too."""
    before = sys.getswitchinterval()
    seen = []
    go = threading.Event()

    def items():
        seen.append(sys.getswitchinterval())
        go.wait(10)
        yield 1
        raise OSError("gone")

    got = parallel.on_thread(items())
    go.set()
    with pytest.raises(OSError):
        list(got)
    assert seen == [min(before, parallel.SWITCH_WHILE_READING)] and sys.getswitchinterval() == before


@needs_root
def test_cycle_imports_no_numpy_ma():
    """The VMAs smaps counted are looked up by numeric.unique_sorted: np.unique imports numpy.ma
    (8-16 ms of a run) the first time. The process measures itself (its own pages are counted)."""
    code = ("import os, sys; from pmaps.analysis.wss import measure; "
            "r = measure(os.getpid(), 'clear_refs', 0.01); "
            "print(any(v.counted for v in r.rows), 'numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]


def test_decode_smaps_listed_counts_the_vmas():
    """decode_smaps_listed: decode_smaps_nonzero's columns, and the number of VMAs that list the
    field, on each of its paths (all zero, a few, many, a text not of smaps' shape)."""
    from pmaps.kernel.smaps import decode_smaps, decode_smaps_listed, decode_smaps_nonzero

    rng = np.random.default_rng(5)
    cases = [_smaps_text([0] * 50), _smaps_text([4] + [0] * 30 + [8, 0, 12]),
             _smaps_text(rng.integers(0, 3, 700).tolist()), b"",
             _smaps_text([0, 4, 8]).replace(b"Size:", b"Sz:", 2)]
    for data in cases:
        rows = decode_smaps(data)
        for name in ("Referenced", "Size", "Swap"):
            starts, values, listed = decode_smaps_listed(data, name)
            want = decode_smaps_nonzero(data, name)
            assert starts.tolist() == want[0].tolist() and values.tolist() == want[1].tolist()
            assert listed == sum(name in r for r in rows), (name, data[:80])


def _rows_match_smaps(mc, res, smaps):
    """The child's own regions' rows: counted = smaps' Referenced, resident = its Rss (read after the
    run: nothing touched them since; a shared library's pages can be marked referenced by any other
    process meanwhile, so those rows are not compared)."""
    by = {r.vma.start: r for r in res.rows}
    for name, reg in mc.regions.items():
        r, want = by[reg["start"]], smaps[reg["start"]]
        assert (r.counted, r.resident) == (want["Referenced"] // 4096, want["Rss"] // 4096), name


def _maps_reads(monkeypatch):
    """A list that grows by one for every read of a maps file."""
    from pmaps.kernel import procfs

    reads = []
    real = procfs.read_file

    def read_file(pid, name, *args, **kw):
        if name == "maps":
            reads.append(pid)
        return real(pid, name, *args, **kw)

    monkeypatch.setattr(procfs, "read_file", read_file)
    return reads


@needs_root
def test_clear_refs_reads_maps_once_a_cycle(monkeypatch):
    """A still target: one maps read a cycle, which smaps' own listing confirms (no second read to
    see two agree); per VMA, ACCESSED is smaps' Referenced read after the run, RESIDENT its Rss."""
    reads = _maps_reads(monkeypatch)
    with MemChild(LAYOUT) as mc:
        res = wss.measure(mc.pid, "clear_refs", interval=0.01, cycles=2)
        smaps = smaps_by_start(mc.pid)
    assert reads == [mc.pid] * (4 if os.environ.get("PMAPS_NO_SCAN") else 2)  # without the scan: maps at the start
    assert [r.vma.start for r in res.rows] == sorted(smaps)
    _rows_match_smaps(mc, res, smaps)


@needs_root
def test_clear_refs_maps_read_that_smaps_contradicts(monkeypatch):
    """A maps read that smaps contradicts (it lists a VMA fewer, as a read torn by a change of the
    target's VMAs can): the table is read again, until two maps reads agree, and the rows are of
    that table, each with smaps' count."""
    from pmaps.kernel.maps import decode_table

    reads = _maps_reads(monkeypatch)
    torn = []

    def read_table(pid, *, started=False):
        raw = b"".join(procfs_read(pid, "maps").splitlines(keepends=True)[1:])  # the first VMA missing
        torn.append(pid)
        return decode_table(raw)

    from pmaps.kernel import procfs

    procfs_read = procfs.read_file
    monkeypatch.setattr(wss, "read_table", read_table)
    with MemChild(LAYOUT) as mc:
        res = wss.measure(mc.pid, "clear_refs", interval=0.01)
        smaps = smaps_by_start(mc.pid)
    start = 2 if os.environ.get("PMAPS_NO_SCAN") else 0  # without the scan: maps at the start
    assert torn == [mc.pid] and reads.count(mc.pid) == start + 1 + 2  # the torn read, then two that agree
    assert [r.vma.start for r in res.rows] == sorted(smaps)
    _rows_match_smaps(mc, res, smaps)


@needs_root
def test_cycle_imports_nothing_after_clear_refs():
    """Nothing is imported between clear_refs and the last smaps read: an import runs code and reads
    files of its own, whose faults can mark shared library pages referenced in the target (what
    the interval would then count). The process measures itself."""
    code = ("import os, sys; import pmaps.analysis.wss as w; real = w.clear_refs; seen = []\n"
            "def cr(*a, **k):\n    real(*a, **k); seen.append(set(sys.modules))\n"
            "w.clear_refs = cr; r = w.measure(os.getpid(), 'clear_refs', 0.01)\n"
            "print(len(r.rows) > 0, sorted(set(sys.modules) - seen[0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=1) == ["True", "[]\n"]
