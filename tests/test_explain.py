"""pmaps explain: every number equals the kernel's, as the sum of named buckets, on three layouts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import PAGE, pmaps_cmd
from memchild import MemChild
from test_swap import SHMEM_CHILD, SHMEM_KINDS, swapfile  # noqa: F401  (fixture)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags, kpagecount)")


def explain(pid: int) -> dict:
    return json.loads(pmaps_cmd("explain", str(pid), "--format", "json").stdout)


def check(pid: int) -> dict:
    """Every number within one page of the kernel's, retried while libraries' sharing moves."""
    bad = None
    for _ in range(10):
        doc = explain(pid)
        bad = [(n["name"], n["kernel"], n["pmaps"]) for n in doc["numbers"]
               if n["kernel"] is not None and abs(n["difference"]) >= PAGE]
        if not bad:
            # Each number is its buckets' sum: the buckets add up to what pmaps reports.
            for n in doc["numbers"]:
                parts = [p for p in n["buckets"] if not p.startswith("pss:") and p not in ("uss", "swap_pss")]
                if len(parts) == len(n["buckets"]):
                    assert n["pmaps"] == sum(doc["buckets"][p] for p in parts), n["name"]
            return doc
    pytest.fail(f"explain disagrees with the kernel: {bad}")


@needs_root
def test_anon_file_zero_thp():
    with MemChild(["a:anon:1M", "f:file:2M:read=0-256", "z:zero:256K", "t:thp:2M"]) as mc:
        doc = check(mc.pid)
        assert doc["buckets"]["zero_page"] >= 256 << 10 and doc["buckets"]["anon"] >= 3 << 20
        assert doc["buckets"]["file"] >= 1 << 20


@needs_root
def test_shared_anonymous_is_shmem():
    with MemChild(["s:shared:1M", "a:anon:64K"]) as mc:
        doc = check(mc.pid)
        assert doc["buckets"]["shmem"] >= 1 << 20


@needs_root
def test_swapped_private_and_shmem(swapfile, tmp_path):  # noqa: F811
    p = subprocess.Popen([sys.executable, "-c", SHMEM_CHILD.replace("{make}", SHMEM_KINDS["memfd"]),
                          str(tmp_path / "unused")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        doc = check(p.pid)
        assert doc["buckets"]["swap_shmem"] >= 512 << 10
    finally:
        p.stdin.close()
        p.wait(10)


def test_explain_needs_a_pid(run):
    assert run("explain", "x").code == 2


@needs_root
def test_chart(tmp_path):
    pytest.importorskip("matplotlib", reason="charts need the plot extra")
    with MemChild(["a:anon:256K"]) as mc:
        out = tmp_path / "x.png"
        pmaps_cmd("explain", str(mc.pid), "--chart", str(out))
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out.stat().st_mode & 0o777) == 0o600


@needs_root
def test_system(run):
    """meminfo's numbers against physical pages by kpageflags: the stable ones agree closely."""
    for _ in range(5):
        doc = json.loads(run("explain", "--system", "--format", "json").out)
        by = {n["name"]: n for n in doc["numbers"]}
        ok = all(abs(by[k]["difference"]) <= max(by[k]["kernel"] // 20, 64 << 20)
                 for k in ("AnonPages", "Mapped", "Shmem", "PageTables", "Hugetlb"))
        if ok:
            assert "AnonPages+Mapped" in by
            return
    pytest.fail(f"explain --system far from meminfo: {by}")
