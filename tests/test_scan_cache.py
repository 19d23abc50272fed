"""The exporter's reuse of unchanged processes (collector.scan_cache.ScanCache): a process is reused only
while its change key and the machine's reclaim/migration counters stand still, and a scan that
reuses gives exactly the figures of a fresh scan."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time

import numpy as np
import pytest

from helpers import diverged_family
from memchild import MemChild
from pmaps.analysis.exporter import export
from pmaps.analysis.system import mm_reps
from pmaps.collector import system as CS
from pmaps.kernel import pagemap as pmb
from pmaps.model import Pages
from pmaps.store import scan as scan_store
from pmaps.analysis.exporter import KPF_ALL as KPF
from pmaps.kernel.status import decode_schedstat, decode_stat_mm, read_mm_key
from pmaps.kernel.vmstat import decode_vmstat, gate_of

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")
FIGURE_BITS = sum(1 << KPF[n] for n in ("anon", "swapbacked", "active", "unevictable", "mlocked", "dirty",
                                        "writeback", "thp", "ksm", "zero_page", "huge"))
STAT = (b"4242 (a (b) c) S 1 4242 4242 0 -1 4194304 1001 0 2 0 31 7 0 0 20 0 3 0 123456 "
        b"16310272 3012 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_decoders():
    # minflt, majflt, utime, stime, num_threads, starttime, vsize, rss
    assert decode_stat_mm(STAT) == (1001, 2, 31, 7, 3, 123456, 16310272, 3012)
    assert decode_schedstat(b"40563046 1234 56\n") == 40563046
    vm = decode_vmstat(b"nr_free_pages 10\npgscan_anon 5\nnuma_hit 99\nthp_split_pmd 3\npgmigrate_success 0\n")
    assert vm == {"nr_free_pages": 10, "pgscan_anon": 5, "numa_hit": 99, "thp_split_pmd": 3, "pgmigrate_success": 0}
    assert gate_of(vm, {"full_scans": 4}) == (("pgmigrate_success", 0), ("pgscan_anon", 5), ("ksm:full_scans", 4))


@contextlib.contextmanager
def recorded(owner, name: str, who):
    """owner.name records who(self, *args) at each call while the real method still runs; the
    list of what it recorded is yielded."""
    real = getattr(owner, name)
    seen: list = []

    def wrapper(self, *a, **k):
        seen.append(who(self, *a))
        return real(self, *a, **k)

    setattr(owner, name, wrapper)
    try:
        yield seen
    finally:
        setattr(owner, name, real)


def opened_processes():
    """The PIDs whose maps and pagemap a scan reads (Process.pages)."""
    return recorded(CS.Process, "pages", lambda self, *a: self.pid)


def rereads():
    """The PIDs whose pagemap entries a scan reads again at their kept addresses (Kept.reread)."""
    return recorded(CS.Kept, "reread", lambda self, pid: pid)


def settle(cache, pid):
    """Scan until the process is reused (a child just started may still fault a page or two, and
    another test's reclaim may move the gate): the reusing scan."""
    for _ in range(50):
        scan = CS.scan_system([pid], cache=cache)
        if cache.reused and cache.reused_pages:  # maps, pagemap and still pages' kpageflags reused
            return scan
        time.sleep(0.1)
    pytest.fail("the process was never reused")


def _figures(scan):
    """Every exported figure but PSS, which follows the map counts of pages other processes share
    (libpython's, mapped and unmapped by every Python starting or ending meanwhile)."""
    ex = export(scan, "pid", 1000)
    return {g.name: ({k: v for k, v in g.fig.items() if k != "pss"}, g.pages, g.procs) for g in ex.groups}


def _without_uss(figs: dict) -> dict:
    return {name: ({k: v for k, v in f.items() if k != "uss"}, pages, procs) for name, (f, pages, procs) in figs.items()}


@needs_root
def test_unchanged_process_is_reused_exactly(monkeypatch):
    real_gate = CS.read_gate
    with MemChild(["a:anon:8M", "f:file:256K", "s:shared:128K"]) as mc:
        cache = CS.ScanCache()
        first = CS.scan_system([mc.pid], cache=cache)
        assert cache.reused == 0 and mc.pid in cache.procs
        # Pages other processes share (libpython's) change flags and counts as they come and go: a
        # quiet moment is one where a reused scan and a fresh one right after agree. The kept pages
        # (present, exclusive, anonymous) must agree with a fresh read always.
        for _ in range(20):
            reused = settle(cache, mc.pid)
            # Its still pages are left out of the reused scan (ProcRec.fixed), their sums kept.
            fixed = reused.procs[0].fixed
            assert fixed is not None and len(fixed) >= 2048 and len(reused.pages) + len(fixed) > 2048
            again = reused.with_fixed()
            assert read_mm_key(mc.pid) == cache.procs[mc.pid].key
            assert cache.reused == 1 and cache.reused_pages == len(again.pages) > 2048
            # The fixed pages' kept sums are what the engine makes of all the pages, fixed or not.
            assert _figures(reused) == _figures(again)
            # A saved scan holds every page, fixed or not.
            loaded = scan_store.loads(scan_store.dumps(reused), "test")
            assert np.array_equal(loaded.pages.vpn, again.pages.vpn) and np.array_equal(loaded.pages.pm, again.pages.pm)
            fresh = CS.scan_system([mc.pid])
            if CS.read_gate() != cache.gate:
                continue  # reclaim or a migration (another test's compaction) in between: no fair pair
            assert again.pages.kflags is not None and fresh.pages.kflags is not None
            kept = CS.still_pages(again.pages.pm, again.pages.kflags, again.pages.cat)
            assert np.array_equal(again.pages.vpn, fresh.pages.vpn)
            # A kept entry is as last read: its exclusive bit only where the page is still, since
            # another process mapping a shared page clears it in this one's pagemap (no figure reads
            # it there: such pages' map counts are read at every scan).
            excl = np.uint64(1 << 56)
            mask = np.where(kept, ~np.uint64(0), ~excl)
            assert np.array_equal(again.pages.pm & mask, fresh.pages.pm & mask)
            assert kept.sum() >= 2048  # a's 8 MiB at least
            # The flags a figure reads. Others move with no event counted and no figure reads them:
            # PG_lru when another task drains the CPU's folio batch a new page sat in, bit 34
            # (PG_anon_exclusive on anonymous pages, include/linux/page-flags.h).
            used = np.uint64(FIGURE_BITS)
            diff = (again.pages.kflags[kept] ^ fresh.pages.kflags[kept]) & used
            assert not diff.any(), (hex(int(np.bitwise_or.reduce(diff))), int(np.count_nonzero(diff)))
            if _figures(reused) == _figures(fresh):
                break
        else:
            pytest.fail(f"a reused scan never agreed with a fresh one: {_figures(again)} {_figures(fresh)}")
        # The process changes its memory: its key changes, it is read again, figures follow.
        mc.cmd("free a 0 512")
        changed = CS.scan_system([mc.pid], cache=cache)
        assert cache.reused == 0
        assert _figures(changed) != _figures(fresh)
        assert _figures(changed)[str(mc.pid)][0]["rss"] == _figures(fresh)[str(mc.pid)][0]["rss"] - 512 * 4096
        # The gate's counters moved since the last scan (one at a time, the key unchanged):
        settle(cache, mc.pid)
        gate = cache.gate
        assert gate is not None
        calls = []
        real_lookup = CS.lookup_pages

        def counted(pages, *a, **k):
            calls.append(len(pages))
            return real_lookup(pages, *a, **k)

        monkeypatch.setattr(CS, "lookup_pages", counted)
        names = [k for k, _ in gate]
        # (counter, maps and pagemap read again, kpageflags of every page read again, pagemap entries
        # read again at the kept addresses only, the event)
        for name, entries_read, flags_read, reread, event in (
                ("pgrefill", False, True, False, "reclaim"),  # kpageflags only
                ("thp_split_page", True, True, False, "thp_split"),  # both
                # a collapse, not of its memory (its PMDs are as kept): nothing read again
                ("thp_collapse_alloc", False, False, False, "collapse"),
                ("pgmigrate_success", False, False, True, "migration")):  # pagemap at the kept addresses
            if name not in names:
                continue
            settle(cache, mc.pid)
            gate = cache.gate
            assert gate is not None
            bumped = tuple((k, v + 1 if k == name else v) for k, v in gate)
            monkeypatch.setattr(CS, "read_gate", lambda bumped=bumped: bumped)
            calls.clear()
            with opened_processes() as opened, rereads() as again:
                scan = CS.scan_system([mc.pid], cache=cache).with_fixed()
            assert (opened == [mc.pid]) == entries_read, (name, opened)
            assert (again == [mc.pid]) == reread, (name, again)
            looked = calls[0] if calls else 0
            assert (looked == len(scan.pages)) == flags_read, (name, looked, len(scan.pages))
            assert cache.reused == (0 if entries_read or reread else 1), (name, "reused", cache.reused)
            assert name != "thp_collapse_alloc" or looked < len(scan.pages), "a collapse elsewhere reuses all flags"
            events = ("reclaim", "thp_split", "migration", "collapse")
            assert cache.moved == {e: e == event for e in events}, cache.moved
            now = CS.scan_system([mc.pid])  # (a migration elsewhere may move a PFN meanwhile: not compared)
            assert np.array_equal(scan.pages.vpn, now.pages.vpn), (name, "vpn")
            still = CS.still_pages(now.pages.pm, now.pages.kflags, now.pages.cat)  # (others map libpython's pages too)
            assert np.array_equal(pmb.top_byte(scan.pages.pm)[still], pmb.top_byte(now.pages.pm)[still]), (name, "pm")
            monkeypatch.setattr(CS, "read_gate", real_gate)


@needs_root
@pytest.mark.skipif(not os.path.exists("/proc/sys/vm/compact_memory"), reason="no CONFIG_COMPACTION")
def test_compaction_rereads_entries_at_kept_addresses():
    """A real migration (compacting the machine's memory moves pages to new PFNs): a still process's
    pagemap entries are read again at its kept addresses only, and the scan, and the one after it
    from what it kept, find what a fresh read finds."""
    with MemChild(["a:anon:64M"]) as mc, rereads() as again:
        cache = CS.ScanCache()
        for _ in range(10):
            settle(cache, mc.pid)
            before = cache.procs[mc.pid].pages.pm.copy()
            again.clear()
            with open("/proc/sys/vm/compact_memory", "w") as f:
                f.write("1")
            scan = CS.scan_system([mc.pid], cache=cache)
            fresh = CS.scan_system([mc.pid])
            moved = int(np.count_nonzero(before != scan.pages.pm))
            if cache.moved != {"reclaim": False, "thp_split": False, "migration": True, "collapse": False} \
                    or CS.read_gate() != cache.gate \
                    or not moved:
                continue  # reclaim too, a migration between the two reads, or none of its pages moved
            assert again == [mc.pid]
            assert np.array_equal(scan.pages.vpn, fresh.pages.vpn) and np.array_equal(scan.pages.pm, fresh.pages.pm)
            assert scan.pages.kflags is not None and fresh.pages.kflags is not None
            still = CS.still_pages(fresh.pages.pm, fresh.pages.kflags, fresh.pages.cat)
            assert still.sum() >= 16384  # a's 64 MiB
            diff = (scan.pages.kflags[still] ^ fresh.pages.kflags[still]) & np.uint64(FIGURE_BITS)
            assert not diff.any()
            # What it keeps now is the moved pages: the next scan reuses them as a fresh read sees them.
            assert np.array_equal(cache.procs[mc.pid].pages.pm, fresh.pages.pm)
            again = CS.scan_system([mc.pid], cache=cache).with_fixed()
            if cache.reused:
                assert np.array_equal(again.pages.pm, fresh.pages.pm)
                assert not ((again.pages.kflags[still] ^ fresh.pages.kflags[still]) & np.uint64(FIGURE_BITS)).any()
            return
        pytest.skip("compaction never moved the child's pages alone (other counters moved too)")


MADV_COLLAPSE = 25  # include/uapi/asm-generic/mman-common.h (Linux 6.1)
SYS_PROCESS_MADVISE = 440  # x86-64


def _collapse(pid: int, start: int, length: int) -> int:
    """process_madvise(MADV_COLLAPSE) on another process's range: a collapse without that process
    running (its change key stands still), counted in thp_collapse_alloc as khugepaged's are."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    class Iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    fd = os.pidfd_open(pid)
    try:
        iov = Iovec(start, length)
        n = libc.syscall(SYS_PROCESS_MADVISE, fd, ctypes.byref(iov), 1, MADV_COLLAPSE, 0)
        return n if n >= 0 else -ctypes.get_errno()
    finally:
        os.close(fd)


@needs_root
def test_collapse_reads_only_the_collapsed_process():
    """A THP collapse (of one process's memory, from outside it): that process is read again and
    shows its new THP as a fresh read does; another process whose PMDs are as kept is reused."""
    with MemChild(["a:anon:8M"]) as mc, MemChild(["b:anon:1M"]) as other:
        reg = mc.regions["a"]
        lo = (reg["start"] + (2 << 20) - 1) & ~((2 << 20) - 1)  # the first 2 MiB-aligned range in it
        cache = CS.ScanCache()
        uss_moved = None
        for _ in range(10):
            for _ in range(50):  # both reused
                CS.scan_system([mc.pid, other.pid], cache=cache)
                if cache.reused == 2:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("never reused")
            before = CS.scan_system([mc.pid], include_self=True)
            err = _collapse(mc.pid, lo, 2 << 20)
            if err < 0:
                pytest.skip(f"process_madvise(MADV_COLLAPSE): {os.strerror(-err)}")
            with opened_processes() as opened:
                scan = CS.scan_system([mc.pid, other.pid], cache=cache)
            gate_after = CS.read_gate()
            fresh = CS.scan_system([mc.pid, other.pid])
            moved = {k for k, _ in set(gate_after or ()) ^ set(cache.gate or ())}
            if cache.moved != {"reclaim": False, "thp_split": False, "migration": False, "collapse": True} or moved:
                continue  # something else moved too, or between the two reads: no clean pair
            assert opened == [mc.pid]  # the collapsed process alone is read again
            assert cache.reused == 1  # the other is reused
            whole = scan.with_fixed()
            for c in ("vpn", "pm"):
                assert np.array_equal(getattr(whole.pages, c), getattr(fresh.pages, c)), c
            figs, now = _figures(scan), _figures(fresh)
            if figs != now and _without_uss(figs) == _without_uss(now):
                # USS alone moved: a page the child shared (libpython's) gained or lost its other
                # mappers between the two reads (a Python started or ended elsewhere). Not a clean
                # pair: try again; a real difference shows in every attempt.
                uss_moved = (figs, now)
                continue
            assert figs == now
            assert figs[str(mc.pid)][0]["anon_thp"] == _figures(before)[str(mc.pid)][0]["anon_thp"] + (2 << 20)
            return
        if uss_moved is not None:
            pytest.fail(f"USS differs between a reused and a fresh scan in every clean attempt: {uss_moved}")
        pytest.skip("the gate never moved by the collapse alone")


SHARER = """
import mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
s = sum(m[i] for i in range(0, len(m), 4096))
print("ok", flush=True)
sys.stdin.read()
"""


@needs_root
def test_a_new_sharer_of_a_kept_process_file_pages_counts():
    """A reused process's file pages that another process maps since: their map counts are read
    again (the kept pagemap entries still say "exclusive"), so its USS drops as a fresh read's."""
    import subprocess
    import sys

    with MemChild(["f:file:256K"]) as mc:
        start = mc.regions["f"]["start"]
        with open(f"/proc/{mc.pid}/maps") as f:
            path = next(ln.split(None, 5)[5].strip() for ln in f if int(ln.split("-")[0], 16) == start)
        cache = CS.ScanCache()
        settle(cache, mc.pid)
        uss_before = _figures(CS.scan_system([mc.pid]))[str(mc.pid)][0]["uss"]
        sharer = subprocess.Popen([sys.executable, "-c", SHARER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert sharer.stdout is not None and sharer.stdout.readline().strip() == b"ok"
            for _ in range(20):
                scan = CS.scan_system([mc.pid], cache=cache)
                fresh = CS.scan_system([mc.pid])
                if cache.reused == 1 and CS.read_gate() == cache.gate:
                    break
            else:
                pytest.skip("never a reused scan beside a fresh one")
            got, want = _figures(scan)[str(mc.pid)][0], _figures(fresh)[str(mc.pid)][0]
            assert got["uss"] == want["uss"] <= uss_before - 64 * 4096, (got, want, uss_before)
            assert got == want
        finally:
            sharer.kill()
            sharer.wait()


@needs_root
def test_reused_clone_vm_sibling_still_shares_its_mm():
    """A CLONE_VM sibling and its parent reused whole (their still pages out of the scan, in
    ProcRec.fixed): the two pids are still proven to be one mm, counted once, as a fresh scan does."""
    with diverged_family("--clone-vm") as fc:
        parent, clone = fc.info["parent"], fc.info["clone"]
        cache = CS.ScanCache()
        for _ in range(50):
            scan = CS.scan_system([parent, clone], cache=cache)
            if cache.reused == 2:
                break
            time.sleep(0.1)
        else:
            pytest.skip("never quiet enough to reuse (other sessions' reclaim or migration)")
        assert all(p.fixed is not None and len(p.fixed) for p in scan.procs)
        at = {p.pid: i for i, p in enumerate(scan.procs)}
        assert mm_reps(scan)[at[clone]] == at[parent]
        # Proven from the fixed pages alone too (the scan's own pages left out):
        none = np.zeros(len(scan.procs[0].vmas), dtype=np.int64)
        bare = dataclasses.replace(scan, pages=Pages.empty(), procs=[
            dataclasses.replace(p, lo=0, hi=0, vma_lo=none, vma_hi=none) for p in scan.procs])
        assert mm_reps(bare)[at[clone]] == at[parent]
        for _ in range(20):
            fresh = CS.scan_system([parent, clone])
            got, want = _figures(scan), _figures(fresh)
            if got == want:
                break
            scan = CS.scan_system([parent, clone], cache=cache)  # libpython's pages moved meanwhile
        assert got == want
        assert got[str(clone)][0]["rss"] == 0 < got[str(parent)][0]["rss"]  # the mm counted once, under its first pid


@needs_root
def test_shared_pages_are_read_afresh():
    """A page another process maps: its map count is read at every scan, reused process or not."""
    with MemChild(["s:shared:256K"]) as mc:
        cache = CS.ScanCache()
        scan = settle(cache, mc.pid).with_fixed()
        kept = cache.procs[mc.pid].pages
        assert kept.kflags is not None
        still = CS.still_pages(kept.pm, kept.kflags, kept.cat)
        start = mc.regions["s"]["start"] >> 12
        mine = (scan.pages.vpn >= start) & (scan.pages.vpn < start + 64)
        assert mine.sum() == 64 and not still[mine].any()  # shmem pages, mapped twice: never kept
        assert scan.pages.kcount is not None and (scan.pages.kcount[mine] == 2).all()


def test_gate_counts_only_what_touches_a_still_page():
    vm = {"pgscan_anon": 1, "pgscan_file": 9, "pgscan_kswapd": 10, "pgrefill": 2, "nr_dirtied": 5,
          "thp_split_pmd": 4, "thp_collapse_alloc": 3, "workingset_refault_file": 8}
    assert dict(gate_of(vm, {})) == {"pgscan_anon": 1, "pgrefill": 2, "thp_collapse_alloc": 3}
    old = {"pgscan_kswapd": 10, "pgsteal_direct": 2, "pgrefill": 2}  # before Linux 5.8: no per-type scans
    assert dict(gate_of(old, {})) == old
    from pmaps.kernel.vmstat import split_gate

    vm["thp_split_page"] = 6
    aging, splits, moves = split_gate(gate_of(vm, {"full_scans": 1}))
    assert dict(aging) == {"pgscan_anon": 1, "pgrefill": 2} and dict(splits) == {"thp_split_page": 6}
    assert dict(moves) == {"thp_collapse_alloc": 3, "ksm:full_scans": 1}


@needs_root
def test_cache_is_bounded_smallest_first():
    """--cache-max: the smallest processes are kept while they fit; a bigger one is read afresh."""
    with MemChild(["a:anon:1M"]) as small, MemChild(["a:anon:16M"]) as big:
        cache = CS.ScanCache(max_bytes=0)
        CS.scan_system([small.pid, big.pid], cache=cache)
        assert cache.procs == {} and cache.nbytes == 0
        first = CS.scan_system([small.pid, big.pid])
        n_small = first.procs[0].hi - first.procs[0].lo
        cache.max_bytes = (n_small + 100) * CS.KEPT_BYTES_PER_PAGE
        CS.scan_system([small.pid, big.pid], cache=cache)
        assert set(cache.procs) == {small.pid} and 0 < cache.nbytes <= cache.max_bytes
        kept = cache.procs[small.pid].pages
        assert kept.kcount is None and kept.kflags is not None and kept.vpn.base is not None  # a compact copy


def _ksm_bytes(pid: int) -> int:
    for ln in open(f"/proc/{pid}/smaps_rollup"):
        if ln.startswith("KSM:"):
            return int(ln.split()[1]) << 10
    return 0


@needs_root
@pytest.mark.skipif(not os.path.exists("/proc/self/ksm_merging_pages") or not os.path.exists("/sys/kernel/mm/ksm/run"),
                    reason="needs KSM with /proc/PID/ksm_merging_pages (Linux 6.1+)")
def test_ksm_merge_shows_in_the_merged_process_only():
    """ksmd merging a still process's pages changes that process's key (ksm_merging_pages), so it is
    read again; another still process stays reused although ksmd's counters moved."""
    from test_top import _write

    base = "/sys/kernel/mm/ksm"
    keys = ("run", "pages_to_scan", "sleep_millisecs")
    old = {k: open(f"{base}/{k}").read().strip() for k in keys}
    if old["run"] == "1":
        pytest.skip("KSM already runs (another user's): merging cannot be timed")
    with MemChild(["k:ksm:1M"]) as merged, MemChild(["a:anon:1M"]) as other:
        cache = CS.ScanCache()
        pids = [merged.pid, other.pid]
        for _ in range(50):
            CS.scan_system(pids, cache=cache)
            if cache.reused == 2 and cache.reused_pages:
                break
            time.sleep(0.1)
        else:
            pytest.skip("never quiet enough to reuse (other sessions' reclaim or migration)")
        try:
            _write(f"{base}/pages_to_scan", "10000")
            _write(f"{base}/sleep_millisecs", "10")
            _write(f"{base}/run", "1")
            for _ in range(100):
                if _ksm_bytes(merged.pid) >= 1 << 20:
                    break
                time.sleep(0.05)
            else:
                pytest.skip("KSM merged nothing within 5 s")
            gate = cache.gate
            scan = CS.scan_system(pids, cache=cache)
            if dict(gate or ()) != dict(CS.read_gate() or ()):
                pytest.skip("reclaim or a migration meanwhile (other sessions)")
            assert cache.reused == 1  # `other`; `merged` was read again
            assert set(cache.procs) == set(pids)
            ex = {g.name: g.fig for g in export(scan, "pid", 10).groups}
            assert ex[str(merged.pid)]["ksm"] >= 1 << 20 and ex[str(other.pid)]["ksm"] == 0
        finally:
            if old["run"] != "1":
                _write(f"{base}/run", "2")  # unmerge what we merged
            for k in ("pages_to_scan", "sleep_millisecs", "run"):
                _write(f"{base}/{k}", old[k])
