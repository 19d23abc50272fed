"""The test child itself, checked against the kernel's own accounting (/proc/PID/smaps)."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # also when run without the conftest

from memchild import MemChild, MemChildError, read_maps, read_smaps, runs_pages  # noqa: E402

KB = 1024
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // KB
IS_ROOT = os.geteuid() == 0

SPECS = [
    "a:anon:256K",
    "sp:anon:1M:every=4:skip=16-64",
    "z:zero:1M",
    "f:file:1M:read=8-16",
    "c:cow:256K",
    "s:shared:256K",
    "t:thp:4M",
    "m:mlock:64K",
    "r:reserve:64T",
    "w:swap:64K",
    "k:ksm:64K",
]


def _thp_enabled() -> bool:
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def _swap_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def child():
    with MemChild(SPECS) as mc:
        yield mc


def _vma(mc: MemChild, name: str) -> dict[str, Any]:
    r = mc.regions[name]
    return read_smaps(mc.pid)[r["start"]]


def _touched_kb(mc: MemChild, name: str) -> int:
    return runs_pages(mc.regions[name]["touched"]) * PAGE_KB


def test_each_region_is_one_vma_with_its_bounds(child: MemChild) -> None:
    smaps = read_smaps(child.pid)
    by_end = {v["end"]: v for v in smaps.values()}
    for name, r in child.regions.items():
        v = smaps.get(r["start"])
        assert v is not None and v["end"] == r["end"], name
        assert r["end"] - r["start"] == r["pages"] * PAGE_KB * KB
        # Its neighbours are guards that differ in protection or flags, so nothing can merge.
        for n in (by_end.get(r["start"]), smaps.get(r["end"])):
            if n is not None:
                assert (n["perms"], n["VmFlags"]) != (v["perms"], v["VmFlags"]), name
    thp = child.regions["t"]
    assert thp["start"] % (2 << 20) == 0


@pytest.mark.parametrize("name", ["a", "sp", "m", "s", "t", "k"])
def test_rss_is_the_touched_pages(child: MemChild, name: str) -> None:
    assert _vma(child, name)["Rss"] == _touched_kb(child, name)


def test_sparse_layout(child: MemChild) -> None:
    r = child.regions["sp"]
    pages = {p for first, n in r["touched"] for p in range(first, first + n)}
    assert pages == {p for p in range(256) if p % 4 == 0 and not 16 <= p < 64}


def test_zero_page_is_not_rss(child: MemChild) -> None:
    v = _vma(child, "z")
    assert v["Rss"] == 0 and v["Size"] == 1024
    assert runs_pages(child.regions["z"]["touched"]) == 256


def test_reservation(child: MemChild) -> None:
    v = _vma(child, "r")
    assert v["Rss"] == 0
    assert v["Size"] == 64 << 30  # kB: 64 TiB
    assert v["perms"].startswith("---")


def test_file_only_touched_pages_resident(child: MemChild) -> None:
    r = child.regions["f"]
    assert r["cached_pages"] == 8 and r["touched"] == [[8, 8]]
    v = _vma(child, "f")
    assert v["Rss"] == 8 * PAGE_KB and v["Anonymous"] == 0
    assert os.path.exists(r["file"]) and v["path"] == r["file"]


def test_cow_even_pages_anonymous(child: MemChild) -> None:
    v = _vma(child, "c")
    assert v["Rss"] == 256 and v["Anonymous"] == 128


def test_shared_mapped_twice(child: MemChild) -> None:
    v = _vma(child, "s")
    assert v["Shared_Dirty"] == 256 and v["Private_Dirty"] == 0
    gc = child.grandchild
    assert gc and Path(f"/proc/{gc}").exists()
    # The grandchild keeps only the shared region of our layout.
    r = child.regions["s"]
    assert (r["start"], r["end"]) in {(lo, hi) for lo, hi, _, _ in read_maps(gc)}


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="PFNs and kpagecount need CAP_SYS_ADMIN")
def test_shared_kpagecount_is_two(child: MemChild) -> None:
    r = child.regions["s"]
    with open(f"/proc/{child.pid}/pagemap", "rb") as f:
        f.seek(r["start"] // (PAGE_KB * KB) * 8)
        entries = struct.unpack(f"<{r['pages']}Q", f.read(8 * r["pages"]))
    with open("/proc/kpagecount", "rb") as f:
        counts = set()
        for e in entries:
            assert e >> 63 & 1  # present
            f.seek((e & ((1 << 55) - 1)) * 8)
            counts.add(struct.unpack("<Q", f.read(8))[0])
    assert counts == {2}


@pytest.mark.skipif(not _thp_enabled(), reason="THP disabled")
def test_thp_is_huge(child: MemChild) -> None:
    v = _vma(child, "t")
    assert v["AnonHugePages"] > 0
    assert "hg" in v["VmFlags"]


def test_mlock_locked(child: MemChild) -> None:
    v = _vma(child, "m")
    assert v["Locked"] == 64 and "lo" in v["VmFlags"]


def test_swap_and_ksm_flags(child: MemChild) -> None:
    assert "mg" in _vma(child, "k")["VmFlags"]
    w = child.regions["w"]
    if _swap_total_kb() == 0:
        assert w["swapped_pages"] == 0 and _vma(child, "w")["Rss"] == 64


def test_commands() -> None:
    with MemChild(["a:anon:64K", "z:zero:64K", "r:reserve:1M", "m:mlock:16K"]) as mc:
        assert mc.cmd("ping") == {"ok": True}
        mc.cmd("free a 0 4")
        assert _vma(mc, "a")["Rss"] == 12 * PAGE_KB
        mc.cmd("touch a 0 2")
        mc.cmd("touch z 0 3")
        assert _vma(mc, "a")["Rss"] == 14 * PAGE_KB
        assert _vma(mc, "z")["Rss"] == 3 * PAGE_KB
        assert mc.cmd("smaps z")["smaps"]["Rss"] == 3 * PAGE_KB
        info = mc.refresh()
        assert info["regions"]["a"]["touched"] == [[0, 2], [4, 12]]
        assert info["regions"]["z"]["written"] == [[0, 3]]
        assert not mc.cmd("touch r 0 1", check=False)["ok"]  # would fault: refused
        assert not mc.cmd("free m", check=False)["ok"]  # EINVAL on mlocked pages
        with pytest.raises(MemChildError):
            mc.cmd("touch a 0 99")
        pid, tmpdir = mc.pid, mc.info["tmpdir"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not Path(tmpdir).exists()


def test_bad_spec_is_reported() -> None:
    with pytest.raises(MemChildError, match="unknown kind"):
        MemChild(["x:nope:64K"]).start()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_runs_as_another_user() -> None:
    with MemChild(["a:anon:64K", "f:file:64K:read=0-1", "s:shared:64K"], user=65534) as mc:
        assert mc.info["uid"] == 65534
        assert os.stat(f"/proc/{mc.pid}").st_uid == 65534
        assert _vma(mc, "a")["Rss"] == 64
        assert _vma(mc, "f")["Rss"] == PAGE_KB
