"""pmaps takes its own mappings out of map counts and PSS (collector/observer.py): a target that
shares libc and libpython with pmaps shows the PSS the kernel shows when pmaps is not running.

The oracle is smaps_rollup read by a static binary (tests/procread.c): it maps no library, so it
does not disturb the counts it reads. pmaps runs as its own process, so the only mappings added
while it reads are its own."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memchild import MemChild
from pmaps.kernel.smaps import decode_rollup

HERE = Path(__file__).resolve().parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpagecount, PFNs)")


@pytest.fixture(scope="module")
def procread(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("no gcc to build the static oracle reader")
    out = tmp_path_factory.mktemp("procread") / "procread"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(HERE / "procread.c")], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot link a static binary here: {r.stderr.strip()[:200]}")
    return out


def static_rollup(procread: Path, pid: int) -> dict[str, int]:
    return decode_rollup(subprocess.run([str(procread), str(pid), "smaps_rollup"], capture_output=True,
                                        check=True).stdout)


def pmaps_json(*argv: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "pmaps", *argv, "--format", "json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_root
@pytest.mark.parametrize("source", ["rollup", "pages"])
def test_pss_equals_the_kernel_without_pmaps(procread, source):
    """PSS of a python target (it shares libpython, libc... with pmaps) equals smaps_rollup read by a
    static binary; with --include-self it is lower by pmaps' share."""
    with MemChild(["a:anon:256K"]) as mc:
        last = None
        for _ in range(20):
            before = static_rollup(procread, mc.pid)
            mine = pmaps_json("top", "-p", str(mc.pid), "--source", source)["rows"][0]
            raw = pmaps_json("top", "-p", str(mc.pid), "--source", source, "--include-self")["rows"][0]
            after = static_rollup(procread, mc.pid)
            if before != after:  # another process mapped or unmapped a shared library meanwhile
                time.sleep(0.05)
                continue
            last = (mine["pss"], raw["pss"], after["Pss"])
            # top reads a process this small from its smaps_rollup, which prints PSS in kB: it and pmaps'
            # correction (exact bytes) can land either side of a kB boundary the page-level sum does not.
            close = abs(mine["pss"] - after["Pss"]) < 1024 if mine["source"] == "smaps_rollup" else \
                mine["pss"] // 1024 == after["Pss"] // 1024
            if close and mine["rss"] == after["Rss"]:
                assert raw["pss"] < mine["pss"], "pmaps shares libraries with a python target: +1 mappers"
                return
            time.sleep(0.05)
        pytest.fail(f"never matched a quiet static read: (pmaps, --include-self, kernel) = {last}")


@needs_root
def test_include_self_adds_exactly_one_mapper(procread):
    """The same ranges, the map count of pages pmaps maps itself one higher with --include-self."""
    with MemChild(["a:anon:64K"]) as mc:
        for _ in range(20):
            a = pmaps_json(str(mc.pid))["processes"][0]["vmas"]
            b = pmaps_json("--include-self", str(mc.pid))["processes"][0]["vmas"]
            diffs = set()
            for va, vb in zip(a, b):
                ra = {(r["index"], r["count"]): r["mapcount"] for r in va["ranges"]}
                rb = {(r["index"], r["count"]): r["mapcount"] for r in vb["ranges"]}
                for k in ra.keys() & rb.keys():
                    if ra[k] is not None and rb[k] is not None:
                        diffs.add(rb[k] - ra[k])
            if diffs <= {0, 1} and 1 in diffs:
                return
            time.sleep(0.05)
        pytest.fail(f"mapcount differences between --include-self and the default: {sorted(diffs)}")


def test_subtract_is_exact_on_arrays():
    import numpy as np

    from pmaps.collector.observer import Observer

    obs = Observer(np.array([10, 20, 30], dtype=np.uint64), np.array([1, 2, 1]))
    pfn = np.array([10, 11, 20, 30, 40], dtype=np.uint64)
    count = np.array([3, 3, 5, 0, 1], dtype=np.uint64)  # PFN 30: the zero page (kpagecount 0)
    assert obs.subtract(pfn, count).tolist() == [2, 3, 3, 0, 1]
    assert obs.mine(pfn).tolist() == [1, 0, 2, 1, 0]


def test_file_ranges_finds_the_lines_of_its_files():
    """The maps lines of the observer's files (first line included), matched on device and whole inode."""
    import numpy as np

    from pmaps.collector.observer import Observer

    obs = Observer(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64),
                   frozenset({("fe:00", 123), ("fe:00", 45), ("08:01", 7)}))
    maps = (b"1000-2000 r--p 00000000 fe:00 123                          /usr/bin/python3\n"
            b"2000-3000 r--p 00000000 fe:00 1234                         /usr/lib/other.so\n"
            b"3000-4000 r-xp 00001000 fe:00 45                           /usr/lib/libc.so.6\n"
            b"4000-5000 rw-p 00000000 00:00 0 \n"
            b"5000-6000 r--p 00000000 08:01 7                            /lib/x.so\n"
            b"6000-7000 r--p 00000000 08:02 7                            /lib/y.so\n"
            b"7000-8000 r--p 00000000 fe:00 123                          /usr/bin/python3")
    assert obs.file_ranges(maps) == [(0x1000, 0x2000), (0x3000, 0x4000), (0x5000, 0x6000), (0x7000, 0x8000)]
    assert Observer(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)).file_ranges(maps) == []
