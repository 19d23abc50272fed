"""The exporter's reuse of unchanged processes (collector.system.ScanCache): a process is reused only
while its change key and the machine's reclaim/migration counters stand still, and a scan that
reuses gives exactly the figures of a fresh scan."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from memchild import MemChild
from pmaps.analysis.exporter import export
from pmaps.collector import system as CS
from pmaps.kernel.status import decode_schedstat, decode_stat_mm, read_mm_key
from pmaps.kernel.vmstat import decode_vmstat, gate_of

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")
STAT = (b"4242 (a (b) c) S 1 4242 4242 0 -1 4194304 1001 0 2 0 31 7 0 0 20 0 3 0 123456 "
        b"16310272 3012 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_decoders():
    # minflt, majflt, utime, stime, num_threads, starttime, vsize, rss
    assert decode_stat_mm(STAT) == (1001, 2, 31, 7, 3, 123456, 16310272, 3012)
    assert decode_schedstat(b"40563046 1234 56\n") == 40563046
    vm = decode_vmstat(b"nr_free_pages 10\npgscan_anon 5\nnuma_hit 99\nthp_split_pmd 3\npgmigrate_success 0\n")
    assert vm == {"nr_free_pages": 10, "pgscan_anon": 5, "numa_hit": 99, "thp_split_pmd": 3, "pgmigrate_success": 0}
    assert gate_of(vm, {"full_scans": 4}) == (("pgmigrate_success", 0), ("pgscan_anon", 5), ("ksm:full_scans", 4))


def settle(cache, pid):
    """Scan until the process is reused (a child just started may still fault a page or two, and
    another test's reclaim may move the gate): the reusing scan."""
    for _ in range(50):
        scan = CS.scan_system([pid], cache=cache)
        if cache.reused:
            return scan
        time.sleep(0.1)
    pytest.fail("the process was never reused")


def _figures(scan):
    """Every exported figure but PSS, which follows the map counts of pages other processes share
    (libpython's, mapped and unmapped by every Python starting or ending meanwhile)."""
    ex = export(scan, "pid", 1000)
    return {g.name: ({k: v for k, v in g.fig.items() if k != "pss"}, g.pages, g.procs) for g in ex.groups}


@needs_root
def test_unchanged_process_is_reused_exactly(monkeypatch):
    with MemChild(["a:anon:8M", "f:file:256K", "s:shared:128K"]) as mc:
        cache = CS.ScanCache()
        first = CS.scan_system([mc.pid], cache=cache)
        assert cache.reused == 0 and mc.pid in cache.procs
        # Pages other processes share (libpython's) change flags and counts as they come and go: a
        # quiet moment is one where a reused scan and a fresh one right after agree. The kept pages
        # (present, exclusive, anonymous) must agree with a fresh read always.
        for _ in range(20):
            again = settle(cache, mc.pid)
            assert read_mm_key(mc.pid) == cache.procs[mc.pid].key
            assert cache.reused == 1 and cache.reused_pages == len(again.pages) > 2048
            fresh = CS.scan_system([mc.pid])
            assert again.pages.kflags is not None and fresh.pages.kflags is not None
            for c in ("vpn", "pm"):
                assert np.array_equal(getattr(again.pages, c), getattr(fresh.pages, c)), c
            kept = CS.still_pages(again.pages.pm, again.pages.kflags)
            assert kept.sum() >= 2048  # a's 8 MiB at least
            assert np.array_equal(again.pages.kflags[kept], fresh.pages.kflags[kept])
            if _figures(again) == _figures(fresh) == _figures(first):
                break
        else:
            pytest.fail(f"a reused scan never agreed with a fresh one: {_figures(again)} {_figures(fresh)}")
        # The process changes its memory: its key changes, it is read again, figures follow.
        mc.cmd("free a 0 512")
        changed = CS.scan_system([mc.pid], cache=cache)
        assert cache.reused == 0
        assert _figures(changed) != _figures(fresh)
        assert _figures(changed)[str(mc.pid)][0]["rss"] == _figures(fresh)[str(mc.pid)][0]["rss"] - 512 * 4096
        # A reclaim/migration/THP/KSM counter moved: nothing is reused, whatever the keys say.
        settle(cache, mc.pid)
        gate = cache.gate
        assert gate is not None
        monkeypatch.setattr(CS, "read_gate", lambda: (*gate[:-1], (gate[-1][0], gate[-1][1] + 1)))
        CS.scan_system([mc.pid], cache=cache)
        assert cache.reused == 0


@needs_root
def test_shared_pages_are_read_afresh():
    """A page another process maps: its map count is read at every scan, reused process or not."""
    with MemChild(["s:shared:256K"]) as mc:
        cache = CS.ScanCache()
        scan = settle(cache, mc.pid)
        kept = cache.procs[mc.pid].pages
        assert kept.kflags is not None
        still = CS.still_pages(kept.pm, kept.kflags)
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

    in_place, moves = split_gate(gate_of(vm, {"full_scans": 1}))
    assert dict(in_place) == {"pgscan_anon": 1, "pgrefill": 2} and dict(moves) == {"thp_collapse_alloc": 3,
                                                                                   "ksm:full_scans": 1}
