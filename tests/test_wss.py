"""pmaps wss with the clear_refs method: a child touches known pages during the interval."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT
from memchild import MemChild

from pmaps.analysis.wss import Ages, located
from pmaps.collect import collect
from pmaps.kernel.refs import clear_refs, idle_bits, idle_words

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")
LAYOUT = ["a:anon:1M", "b:anon:1M:skip=0-256", "c:anon:512K"]


def region_vpns(mc, snap, acc, name):
    r = mc.regions[name]
    sel = acc & (snap.pages.vpn >= r["start"] >> 12) & (snap.pages.vpn < r["end"] >> 12)
    return set((snap.pages.vpn[sel] - (r["start"] >> 12)).tolist())


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


def test_cli_counts_cpu_writes_exactly(tmp_path):
    """CPU writes to resident pages: per-VMA ACCESSED (smaps Referenced) is exact."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with MemChild(LAYOUT) as mc:
        p = subprocess.Popen([sys.executable, "-m", "pmaps", "wss", str(mc.pid), "--interval", "2.5",
                              "--format", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.2)  # pmaps starts, samples, clears
            mc.cmd("touch a 10 30")  # 20 pages written by the CPU (memset)
            mc.cmd("touch c 0 3")
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["method"] == "clear_refs" and doc["limits"]
    by = {v["start"]: v for v in doc["vmas"]}
    assert by[mc.regions["a"]["start"]]["accessed"] == 20
    assert by[mc.regions["c"]["start"]]["accessed"] == 3
    assert by.get(mc.regions["b"]["start"], {"accessed": 0})["accessed"] == 0


def test_ages_histogram():
    ages = Ages()
    v = np.arange(10, dtype=np.uint64)
    ages.update(v, np.array([1] * 4 + [0] * 6, dtype=bool))
    ages.update(v, np.array([0] * 2 + [1] * 2 + [0] * 6, dtype=bool))
    ages.update(v[:9], np.array([0] * 9, dtype=bool))
    assert ages.histogram() == [("1", 0), ("2", 2), ("3", 2), ("never (>3)", 5)]


def test_idle_bitmap_encoding():
    pfns = np.array([0, 1, 63, 64, 130, 129], dtype=np.uint64)
    words, masks = idle_words(pfns)
    assert words.tolist() == [0, 1, 2]
    assert masks.tolist() == [(1 << 0) | (1 << 1) | (1 << 63), 1, (1 << 2) | (1 << 1)]
    back = idle_bits(np.array([1 << 63, 1, 1 << 1], dtype=np.uint64), pfns)
    assert back.tolist() == [False, False, True, True, False, True]


def test_idle_unavailable_is_one_line(run):
    if os.path.exists("/sys/kernel/mm/page_idle/bitmap"):
        pytest.skip("this kernel has idle page tracking")
    r = run("wss", str(os.getpid()), "--method", "idle")
    assert r.code == 5 and r.err.count("\n") == 1
