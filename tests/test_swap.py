"""A swapped-out region: make a swap file, push pages out with MADV_PAGEOUT, remove it after."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import PAGE, json_vmas, page_set, pmaps_cmd, smaps_by_start, text_blocks
from memchild import MemChild

SWAP_MB = 64


def _swaps() -> list[str]:
    return [ln.split()[0] for ln in Path("/proc/swaps").read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def swapfile(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("mkswap") or not shutil.which("swapon"):
        pytest.skip("needs root with mkswap/swapon")
    # Swap files cannot live on tmpfs: put it beside the checkout (ext4 here).
    path = Path(__file__).resolve().parent / f".pmaps-test-swap-{os.getpid()}"
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * (SWAP_MB << 20))  # no holes: swapon refuses sparse files
        path.chmod(0o600)
        subprocess.run(["mkswap", str(path)], check=True, capture_output=True)
        r = subprocess.run(["swapon", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"swapon refused: {r.stderr.strip()}")
        yield path
    finally:
        if str(path) in _swaps():
            subprocess.run(["swapoff", str(path)], check=False)
        path.unlink(missing_ok=True)


def test_swapped_ranges(swapfile):
    with MemChild(["a:anon:256K", "sw:anon:1M"]) as mc:
        mc.cmd("pageout sw 0 128")
        sw = mc.regions["sw"]
        for _ in range(50):
            if smaps_by_start(mc.pid)[sw["start"]]["Swap"] >= 128 * PAGE:
                break
            mc.cmd("pageout sw 0 128")
            time.sleep(0.05)
        k = smaps_by_start(mc.pid)[sw["start"]]
        assert k["Swap"] > 0, "MADV_PAGEOUT pushed nothing out"
        swapped_pages = k["Swap"] // PAGE

        # Default: resident pages only.
        plain = json_vmas(pmaps_cmd("--format", "json", str(mc.pid)).stdout)[sw["start"]]["ranges"]
        assert sum(r["count"] for r in plain) == k["Rss"] // PAGE
        # --swap: the swapped ranges too, marked.
        doc = json_vmas(pmaps_cmd("--swap", "--format", "json", str(mc.pid)).stdout)[sw["start"]]["ranges"]
        swr = [r for r in doc if "swapped" in r["names"]]
        assert sum(r["count"] for r in swr) == swapped_pages
        assert all(r["flags"] == "swapped" and r["mapcount"] is None for r in swr)
        # Every page was written: each is now either resident or swapped, none lost.
        assert page_set(doc) == set(range(256))
        assert swapped_pages + k["Rss"] // PAGE == 256
        text = pmaps_cmd("--swap", str(mc.pid)).stdout
        (rows,) = [rows for line, rows in text_blocks(text) if line.startswith(f"{sw['start']:08x}-")]
        assert sum(c for _, c, f, m in rows if f == "swapped" and m == "-") == swapped_pages
        # Totals against smaps, both paths.
        for env in ({}, {"PMAPS_NO_SCAN": "1"}):
            r = pmaps_cmd("--summary", "--format", "json", str(mc.pid), env=env)
            (proc,) = json.loads(r.stdout)["processes"]
            got = {v["start"]: v for v in proc["vmas"]}[sw["start"]]
            assert got["swap"] == k["Swap"] and got["rss"] == k["Rss"] and got["swap_pss"] == k["SwapPss"]


SWAPPED_FORK = r"""
import mmap, os, sys, time
m = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, 1 << 20, 4096):
    m[i] = 1
def swapped():
    with open("/proc/self/smaps_rollup") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("Swap:"))
for _ in range(100):
    m.madvise(21)  # MADV_PAGEOUT (include/uapi/asm-generic/mman-common.h; no constant in Python 3.11)
    if swapped() >= 1000:
        break
    time.sleep(0.02)
pid = os.fork()  # the child inherits the swap ptes: every swap entry now has two holders
if pid == 0:
    time.sleep(120)
    os._exit(0)
print(pid, flush=True)
sys.stdin.readline()
os.kill(pid, 9)
"""


def test_swap_pss_with_a_forked_holder(swapfile):
    """Swap entries shared by a parent and its child: SwapPss is half of Swap for each, as smaps says,
    whether top sees the child (-p PARENT,CHILD) or not (-p PARENT), and in --summary per VMA."""
    import sys

    p = subprocess.Popen([sys.executable, "-c", SWAPPED_FORK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        child = int(p.stdout.readline())
        parent = p.pid
        k = {pid: decode(pid) for pid in (parent, child)}
        if k[parent]["Swap"] < 512 << 10:
            pytest.skip("MADV_PAGEOUT pushed out too little")
        assert k[parent]["SwapPss"] < k[parent]["Swap"]  # shared: the kernel halves it
        for sel in (str(parent), f"{parent},{child}"):
            rows = {r["pid"]: r for r in json.loads(pmaps_cmd("top", "-p", sel, "--format", "json").stdout)["rows"]}
            assert rows[parent]["swap"] == k[parent]["Swap"], sel
            assert rows[parent]["swap_pss"] == k[parent]["SwapPss"], sel
        (proc,) = json.loads(pmaps_cmd("--summary", "--format", "json", str(parent)).stdout)["processes"]
        sm = smaps_by_start(parent)
        for v in proc["vmas"]:
            assert v["swap_pss"] == sm[v["start"]].get("SwapPss", 0), hex(v["start"])
        assert proc["total"]["swap_pss"] == k[parent]["SwapPss"]
    finally:
        p.stdin.close()
        p.wait(10)


def test_swap_pss_unknown_without_root(swapfile):
    """Without root pagemap hides every swap entry (frame 0): which ptes share one is unknown, so
    SwapPss is null, never the figure of all of them taken as one entry; Swap stays exact."""
    import sys

    from helpers import NOBODY

    p = subprocess.Popen([*NOBODY, sys.executable, "-c", SWAPPED_FORK], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        int(p.stdout.readline())
        k = decode(p.pid)
        if k["Swap"] < 512 << 10:
            pytest.skip("MADV_PAGEOUT pushed out too little")
        for env in ({}, {"PMAPS_NO_SCAN": "1"}):
            r = pmaps_cmd("--summary", "--format", "json", str(p.pid), user=True, env=env)
            (proc,) = json.loads(r.stdout)["processes"]
            assert proc["total"]["swap"] == k["Swap"] and proc["total"]["swap_pss"] is None, env
            sm = smaps_by_start(p.pid)
            for v in proc["vmas"]:
                assert v["swap"] == sm[v["start"]].get("Swap", 0) and v["swap_pss"] is None, hex(v["start"])
        rows = json.loads(pmaps_cmd("top", "-p", str(p.pid), "--source", "pages", "--format", "json",
                                    user=True).stdout)["rows"]
        assert rows[0]["swap"] == k["Swap"] and rows[0]["swap_pss"] is None
    finally:
        p.stdin.close()
        p.wait(10)


def decode(pid: int) -> dict[str, int]:
    from pmaps.kernel.smaps import decode_rollup

    return decode_rollup(Path(f"/proc/{pid}/smaps_rollup").read_bytes())


SHMEM_KINDS = {
    "memfd": "fd = os.memfd_create('pmaps-test'); os.ftruncate(fd, SIZE); m = mmap.mmap(fd, SIZE)",
    "shared_anon": "m = mmap.mmap(-1, SIZE)",  # MAP_SHARED | MAP_ANONYMOUS: shmem behind the scenes
    "tmpfs": "fd = os.open(TMPFS, os.O_RDWR | os.O_CREAT, 0o600); os.ftruncate(fd, SIZE); m = mmap.mmap(fd, SIZE)",
}
SHMEM_CHILD = r"""
import mmap, os, sys, time
SIZE = 1 << 20
TMPFS = sys.argv[1]
{make}
for i in range(0, SIZE, 4096):
    m[i] = 1
for _ in range(100):
    m.madvise(21)  # MADV_PAGEOUT
    time.sleep(0.02)
    with open("/proc/self/smaps_rollup") as f:
        if next(int(l.split()[1]) for l in f if l.startswith("Swap:")) >= 900:
            break
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("kind", sorted(SHMEM_KINDS))
def test_swapped_shmem_counts(swapfile, kind, tmp_path):
    """Shmem pushed out to swap has no pte; smaps counts it in Swap (not SwapPss), and so does pmaps,
    per VMA, in top, and as swapped ranges with --swap."""
    import sys

    tmpfs = Path("/dev/shm") / f"pmaps-test-{os.getpid()}-{kind}"
    p = subprocess.Popen([sys.executable, "-c", SHMEM_CHILD.replace("{make}", SHMEM_KINDS[kind]), str(tmpfs)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        sm = smaps_by_start(p.pid)
        (start,) = [s for s, v in sm.items() if v.get("Swap", 0) >= 256 << 10 and v["end"] - s == 1 << 20]
        k = sm[start]
        (proc,) = json.loads(pmaps_cmd("--summary", "--format", "json", str(p.pid)).stdout)["processes"]
        got = {v["start"]: v for v in proc["vmas"]}[start]
        assert (got["swap"], got["swap_pss"], got["rss"]) == (k["Swap"], k["SwapPss"], k["Rss"])
        (row,) = json.loads(pmaps_cmd("top", "-p", str(p.pid), "--format", "json").stdout)["rows"]
        roll = decode(p.pid)
        assert (row["swap"], row["swap_pss"]) == (roll["Swap"], roll["SwapPss"])
        ranges = json_vmas(pmaps_cmd("--swap", "--format", "json", str(p.pid)).stdout)[start]["ranges"]
        swr = [r for r in ranges if "swapped" in r["names"]]
        assert sum(r["count"] for r in swr) * PAGE == k["Swap"] and all("file" in r["names"] for r in swr)
        assert page_set(ranges) == set(range(256))  # every page: resident or swapped
    finally:
        p.stdin.close()
        p.wait(10)
        tmpfs.unlink(missing_ok=True)


def test_exporter_cache_survives_another_process_pageout(swapfile):
    """Another process's MADV_PAGEOUT moves pswpout but touches only pages that process maps alone:
    a still process stays reused (its pages as a fresh scan reads them), the swapping one is re-read."""
    from pmaps.collector import system as CS
    from pmaps.kernel.vmstat import decode_vmstat

    def pswpout() -> int:
        return decode_vmstat(Path("/proc/vmstat").read_bytes()).get("pswpout", 0)

    with MemChild(["a:anon:4M"]) as still, MemChild(["sw:anon:1M"]) as swapper:
        cache = CS.ScanCache()
        for _ in range(50):  # settle: both reused once (no reclaim or migration meanwhile)
            CS.scan_system([still.pid, swapper.pid], cache=cache)
            if cache.reused == 2 and cache.reused_pages:
                break
            time.sleep(0.1)
        else:
            pytest.skip("never quiet enough to reuse (other sessions' reclaim or migration)")
        for _ in range(20):
            gate, before = cache.gate, pswpout()
            swapper.cmd("pageout sw 0 256")
            if pswpout() == before:
                continue
            raw = CS.scan_system([still.pid, swapper.pid], cache=cache)
            scan = raw.with_fixed()
            if dict(gate or ()) != dict(CS.read_gate() or ()):
                continue  # other reclaim or a migration meanwhile: no fair test
            assert cache.reused == 1  # the still process; the swapper's key moved
            assert [p.pid for p in raw.procs if p.fixed is not None] == [still.pid]
            fresh = CS.scan_system([still.pid])
            mine = [p for p in scan.procs if p.pid == still.pid][0]
            assert mine.hi - mine.lo == len(fresh.pages)
            assert (scan.pages.vpn[mine.lo:mine.hi] == fresh.pages.vpn).all()
            # (A kept entry is as last read: the "exclusive" bit of a file page goes stale as other
            # processes map it; its map count is read afresh, collector/system.py _lookup_union.)
            keep = np.where((fresh.pages.pm >> np.uint64(61)) & np.uint64(1) != 0, ~np.uint64(1 << 56), ~np.uint64(0))
            assert (scan.pages.pm[mine.lo:mine.hi] & keep == fresh.pages.pm & keep).all()
            swapped = [p for p in scan.procs if p.pid == swapper.pid][0]
            sw = swapper.regions["sw"]["start"] >> 12
            vpn = scan.pages.vpn[swapped.lo:swapped.hi]
            pm = scan.pages.pm[swapped.lo:swapped.hi]
            in_sw = (vpn >= sw) & (vpn < sw + 256)
            assert ((pm[in_sw] >> 62) & 1).any(), "the swapper's pages read as swapped"
            return
        pytest.skip("MADV_PAGEOUT never swapped anything out on a quiet machine")
