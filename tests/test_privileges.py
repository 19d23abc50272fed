"""The unprivileged path, run for real: nobody on its own process, on root's, and root without
CAP_SYS_ADMIN."""
from __future__ import annotations

import json

import pytest
from helpers import json_vmas, page_set, pmaps_cmd, runs_to_set, smaps_by_start, text_blocks
from memchild import MemChild

LAYOUT = ["a:anon:256K", "z:zero:64K", "s:anon:256K:every=4", "t:thp:2M"]


@pytest.fixture(scope="module")
def nobody_child():
    with MemChild(LAYOUT, user=65534) as mc:
        yield mc


def test_nobody_sees_own_pages(nobody_child):
    mc = nobody_child
    r = pmaps_cmd("--format", "json", str(mc.pid), user=True)
    vmas = json_vmas(r.stdout)
    for name in ("a", "s", "t"):
        reg = mc.regions[name]
        assert page_set(vmas[reg["start"]]["ranges"]) == runs_to_set(reg["touched"]), name
    a = vmas[mc.regions["a"]["start"]]["ranges"]
    # pagemap bits are there; page flags and counts are not
    assert all({"present", "exclusive"} <= set(x["names"]) and x["mapcount"] is None for x in a)
    assert all(x["flags"] == "???????" for x in a)
    z = vmas[mc.regions["z"]["start"]]["ranges"]
    assert page_set(z) == set(range(16)) and all("zero_page" in x["names"] for x in z)  # PAGEMAP_SCAN tells


def test_nobody_text_says_what_is_missing(nobody_child):
    r = pmaps_cmd(str(nobody_child.pid), user=True)
    assert r.returncode == 0
    notes = [ln for ln in r.stderr.splitlines() if ln]
    assert len(notes) == 1 and "CAP_SYS_ADMIN" in notes[0]
    for _line, rows in text_blocks(r.stdout):
        assert all(mc == "?" for *_, mc in rows)


def test_nobody_summary_matches_smaps_where_knowable(nobody_child):
    mc = nobody_child
    r = pmaps_cmd("--summary", "--format", "json", str(mc.pid), user=True)
    (proc,) = json.loads(r.stdout)["processes"]
    got = {v["start"]: v for v in proc["vmas"]}
    sm = smaps_by_start(mc.pid)
    for name in ("a", "z", "s", "t"):
        start = mc.regions[name]["start"]
        assert got[start]["rss"] == sm[start]["Rss"], name
        assert got[start]["uss"] == sm[start]["Private_Clean"] + sm[start]["Private_Dirty"], name
        assert got[start]["anon_thp"] == sm[start]["AnonHugePages"], name
        assert got[start]["pss"] is None  # needs kpagecount


def test_nobody_fallback_path(nobody_child):
    mc = nobody_child
    r = pmaps_cmd("--format", "json", str(mc.pid), user=True, env={"PMAPS_NO_SCAN": "1"})
    vmas = json_vmas(r.stdout)
    reg = mc.regions["s"]
    assert page_set(vmas[reg["start"]]["ranges"]) == runs_to_set(reg["touched"])


def test_nobody_on_roots_process():
    with MemChild(["a:anon:64K"]) as mc:
        r = pmaps_cmd(str(mc.pid), user=True, check=False)
    assert r.returncode == 4
    assert "permission denied" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_root_without_cap_sys_admin(tmp_path):
    """kpageflags still opens (file mode), but pagemap hides PFNs: never report PFN 0's flags."""
    with MemChild(["a:anon:256K"]) as mc:
        argv = ["--format", "json", str(mc.pid)]
        import subprocess
        import sys

        from helpers import ROOT

        r = subprocess.run(["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", sys.executable, "-m",
                            "pmaps", *argv], capture_output=True, text=True,
                           env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        proc = doc["processes"][0]
        assert proc["known"]["pfn"] is False and proc["known"]["flags"] is False
        a = {v["start"]: v for v in proc["vmas"]}[mc.regions["a"]["start"]]["ranges"]
        assert sum(x["count"] for x in a) == 64
        assert all(x["flags"] == "???????" and x["mapcount"] is None for x in a)


def test_folios_of_a_snapshot_saved_without_root(nobody_child):
    """A snapshot nobody saved has no kpageflags or PFNs: `--folios` of it says so (exit 5), even
    as root, who cannot add them now (it said "run as root", exit 4)."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="pmaps-nobody-"))  # under /tmp: nobody reaches it
    try:
        os.chown(d, 65534, 65534)
        snap = d / "s.npz"
        pmaps_cmd("save", str(nobody_child.pid), "-o", str(snap), user=True)
        r = pmaps_cmd("show", "--folios", str(snap), check=False)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 5 and "this snapshot has none" in r.stderr and len(r.stderr.splitlines()) == 1
    r = pmaps_cmd("show", "--folios", str(nobody_child.pid), user=True, check=False)
    assert r.returncode == 4 and "run as root" in r.stderr
