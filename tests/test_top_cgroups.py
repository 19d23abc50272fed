"""pmaps top --group-by cgroup: rows by membership (/proc/PID/cgroup), and the CHARGED, ELSEWHERE and
FROM_OTHERS columns from kpagecgroup (the reader of `pmaps PID --cgroup` and `pmaps cgroups`).

Against memory cgroups this test creates and removes: A's process writes anonymous memory and
reads a file (charged to A); B's process maps that file; a third process writes anonymous memory
in A, then is moved to B (its charges stay in A: v1 moves no charge by default, v2 never).
Oracles: an independent walk of the processes' pagemap and /proc/kpagecgroup (exact), and
memory.stat (rss + mapped_file of a leaf cgroup is what a scan of every process finds charged there).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import MEMCG, PAGE, close, memcgs, needs_memcg, start_in, uncached_file, within
from pmaps.analysis import cgroups as C

WORK_A = r"""
import sys
anon = bytearray(16 << 20)
for i in range(0, len(anon), 4096): anon[i] = 1            # 16 MiB anonymous, charged to A
with open(sys.argv[1], "rb") as f:                          # the file, read (not mapped): charged to A
    while f.read(1 << 20): pass
print("ready", flush=True)
sys.stdin.read()
"""

WORK_B = r"""
import mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
s = sum(m[i] for i in range(0, len(m), 4096))              # maps every page of A's file
anon = bytearray(8 << 20)
for i in range(0, len(anon), 4096): anon[i] = 1            # 8 MiB anonymous, charged to B
print("ready", flush=True)
sys.stdin.read()
"""

WORK_MOVED = r"""
import sys
anon = bytearray(4 << 20)
for i in range(0, len(anon), 4096): anon[i] = 1            # 4 MiB anonymous, charged to A; then moved to B
print("ready", flush=True)
sys.stdin.read()
"""

PFN_MASK = (1 << 55) - 1


def mapped_pfns(pid: int) -> np.ndarray:
    """The PFNs of every present page of a process, from its pagemap (unique, sorted)."""
    found = [np.zeros(0, np.uint64)]
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm:
        for line in maps:
            if line.rstrip().endswith("[vsyscall]"):
                continue
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            e = np.frombuffer(os.pread(pm.fileno(), (hi - lo) // PAGE * 8, lo // PAGE * 8), "<u8")
            found.append(e[(e >> np.uint64(63)) == 1] & np.uint64(PFN_MASK))
    return np.unique(np.concatenate(found))


def kpagecgroup(pfns: np.ndarray) -> dict[int, int]:
    fd = os.open("/proc/kpagecgroup", os.O_RDONLY)
    try:
        return {p: int.from_bytes(os.pread(fd, 8, p * 8), "little") for p in pfns.tolist()}
    finally:
        os.close(fd)


def oracle(members: dict[str, list[int]], inode: dict[str, int]) -> dict[str, dict[str, int]]:
    """CHARGED, ELSEWHERE and FROM_OTHERS in bytes for the cgroups in `inode`, from the pagemaps of
    the processes in `members` (cgroup -> pids) and kpagecgroup, with sets."""
    pages = {cg: set().union(*(set(mapped_pfns(p).tolist()) for p in pids)) for cg, pids in members.items()}
    every = set().union(*pages.values())
    charge = kpagecgroup(np.array(sorted(every), np.uint64))
    out = {}
    for cg, ino in inode.items():
        mine = {p for p in every if charge[p] == ino}
        own = pages.get(cg, set())
        out[cg] = {"charged": len(mine) * PAGE, "mapped_elsewhere": len(mine - own) * PAGE,
                   "mapped_from_others": len({p for p in own if charge[p] not in (0, ino)}) * PAGE}
    return out


def top_rows(run, *args: str) -> tuple[dict[str, dict], dict]:
    r = run("top", "--group-by", "cgroup", "--format", "json", *args)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    return {x["cgroup"]: x for x in doc["rows"]}, doc["total"]


def memory_stat(cg: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (cg / "memory.stat").read_text().splitlines())}


@needs_memcg
def test_group_by_cgroup_charged_columns(run, tmp_path):
    assert MEMCG is not None
    data = uncached_file(tmp_path / "shared.dat", 8 << 20)  # not cached: A's read charges it to A
    with memcgs() as (parent, base):
        procs = []
        try:
            a = start_in(parent / "A", WORK_A, str(data))
            procs.append(a)
            b = start_in(parent / "B", WORK_B, str(data))
            procs.append(b)
            moved = start_in(parent / "A", WORK_MOVED)
            procs.append(moved)
            (parent / "B" / "cgroup.procs").write_text(str(moved.pid))  # a process of ours, to a cgroup of ours
            ga, gb = f"{base}/A", f"{base}/B"
            inode = {ga: os.stat(parent / "A").st_ino, gb: os.stat(parent / "B").st_ino}
            members = {ga: [a.pid], gb: [b.pid, moved.pid]}
            pids = ",".join(str(p.pid) for p in procs)
            # 1. the three processes alone: exact against the independent walk (idle processes: a
            #    second try only if something moved between the two reads)
            for _ in range(3):
                rows, total = top_rows(run, "-p", pids)
                want = oracle(members, inode)
                if all({k: rows[cg][k] for k in C.CHARGE_KEYS} == want[cg] for cg in (ga, gb)):
                    break
            else:
                pytest.fail(f"top {rows} != oracle {want}")
            assert rows[ga]["procs"] == 1 and rows[gb]["procs"] == 2
            # what the workloads make certain: A pays for the file B maps and for the moved
            # process's memory; B's processes use 8 MiB + 4 MiB that A pays for
            assert rows[ga]["charged"] >= (16 + 8 + 4) << 20
            assert rows[ga]["mapped_elsewhere"] >= (8 + 4) << 20
            assert rows[gb]["mapped_from_others"] >= (8 + 4) << 20
            assert rows[gb]["charged"] >= 8 << 20
            # totals: each page once; every charged page of the scan is in exactly one row
            assert total["charged"] == sum(r["charged"] for r in rows.values())
            assert total["mapped_elsewhere"] == sum(r["mapped_elsewhere"] for r in rows.values())
            # cgroups charged for the scanned pages but with none of their processes scanned: procs 0
            assert all(r["procs"] == 0 and r["rss"] == 0 for cg, r in rows.items() if cg not in (ga, gb))
            # 2. every process: the pages mapped and charged to a leaf cgroup are its memory.stat's
            #    mapped anon (rss; v2 anon) and mapped file (mapped_file; v2 file_mapped)
            keys = ("rss", "mapped_file") if MEMCG.version == 1 else ("anon", "file_mapped")
            for _ in range(5):
                rows, _ = top_rows(run)
                stats = {cg: memory_stat(parent / cg.rsplit("/", 1)[1]) for cg in (ga, gb)}
                if all(within(rows[cg]["charged"], sum(stats[cg][k] for k in keys)) for cg in (ga, gb)):
                    break
            else:
                pytest.fail(f"top {[(rows[cg]['charged'], stats[cg]) for cg in (ga, gb)]}")
            # text: the columns and the note that explains them
            r = run("top", "--group-by", "cgroup", "-p", pids)
            assert r.code == 0, r.err
            assert r.out.splitlines()[0].split()[-3:] == ["CHARGED", "ELSEWHERE", "FROM_OTHERS"]
            assert "# CHARGED: pages the scanned processes map" in r.out
        finally:
            for p in procs:
                close(p)
    assert not parent.exists()


def test_group_charges_against_sets():
    """group_charges on a captured scan with made-up charges, against the same sums done with sets."""
    from pmaps.store import scan as scanfile

    scan = scanfile.load(Path(__file__).parent / "golden" / "sysscan.npz")
    pg = scan.pages
    present = (pg.pm >> np.uint64(63)) == 1
    pfn = pg.pm & np.uint64(PFN_MASK)
    rng = np.random.default_rng(12)
    # charges by PFN (one memcg per page, whoever maps it): 0 (none), the cgroups of the scan, one more
    names = {0: "", 11: "/app.slice", 12: "/web.slice", 13: "/gone.slice", 1: "/"}
    by_pfn = {int(p): int(rng.choice([0, 1, 11, 12, 13, 99])) for p in np.unique(pfn[present]).tolist()}
    kc = np.array([by_pfn.get(int(p), 0) if ok else 0 for p, ok in zip(pfn.tolist(), present.tolist())], np.uint64)
    del names[0]
    got = C.group_charges(scan, kc, names)
    mapped: dict[str, set[int]] = {}
    for p in scan.procs:
        sel = present[p.lo:p.hi]
        mapped.setdefault(p.ident.cgroup, set()).update(pfn[p.lo:p.hi][sel].tolist())
    every = set().union(*mapped.values())
    named = {**names, 99: "?99"}
    assert set(got.charged) <= set(named.values())
    for ino, cg in named.items():
        mine = {p for p in every if by_pfn[p] == ino}
        own = mapped.get(cg, set())
        assert got.of(cg) == {"charged": len(mine), "mapped_elsewhere": len(mine - own),
                              "mapped_from_others": len({p for p in own if by_pfn[p] not in (0, ino)})}, cg
    assert got.total["charged"] == len({p for p in every if by_pfn[p]})
    assert got.total["mapped_from_others"] == len(
        {p for cg, own in mapped.items() for p in own if by_pfn[p] and named[by_pfn[p]] != cg})


def test_loaded_scan_says_why_the_columns_are_unknown(run):
    r = run("top", "--group-by", "cgroup", "--load-scan", str(Path(__file__).parent / "golden" / "sysscan.npz"))
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[1].split()[-3:] == ["?", "?", "?"]
    assert "# CHARGED, ELSEWHERE, FROM_OTHERS unknown: this saved scan has no kpagecgroup (saved without root, or by " \
           "an older pmaps)" in lines


@needs_memcg
def test_saved_scan_keeps_its_charges(run, tmp_path):
    """top --save-scan records kpagecgroup and the memcg names: --load-scan --group-by cgroup then
    gives the live run's CHARGED, ELSEWHERE and FROM_OTHERS exactly (the same pages, the same charges)."""
    data = uncached_file(tmp_path / "shared.dat", 4 << 20)  # not cached: A's read charges it to A
    saved = tmp_path / "scan.npz"
    with memcgs() as (parent, base):
        procs = []
        try:
            procs.append(start_in(parent / "A", WORK_A, str(data)))
            procs.append(start_in(parent / "B", WORK_B, str(data)))
            pids = ",".join(str(p.pid) for p in procs)
            live = json.loads(run("top", "--group-by", "cgroup", "-p", pids, "--format", "json",
                                  "--save-scan", str(saved)).out)
        finally:
            for p in procs:
                close(p)
    r = run("top", "--group-by", "cgroup", "--load-scan", str(saved), "--format", "json")
    assert r.code == 0, r.err
    loaded = json.loads(r.out)

    def charges(doc: dict) -> dict[str, dict[str, int]]:
        return {row["cgroup"]: {k: row[k] for k in C.CHARGE_KEYS} for row in doc["rows"]}

    assert charges(loaded) == charges(live)
    assert {k: loaded["total"][k] for k in C.CHARGE_KEYS} == {k: live["total"][k] for k in C.CHARGE_KEYS}
    assert charges(live)[f"{base}/A"]["mapped_elsewhere"] >= 4 << 20  # the file B maps, charged to A


def test_scan_file_round_trip_with_charges(tmp_path):
    """store.scan: kcgroup and the memcg names survive dumps/loads; names without the column are refused."""
    from pmaps.errors import BadSnapshot
    from pmaps.store import scan as scanfile
    from pmaps.store.codec import pack_npz, unpack_npz

    scan = scanfile.load(Path(__file__).parent / "golden" / "sysscan.npz")
    assert scan.memcgs is None and scan.pages.kcgroup is None
    rng = np.random.default_rng(7)
    scan.pages.kcgroup = rng.choice(np.array([0, 11, 12], np.uint64), len(scan.pages))
    scan.memcgs = {11: "/app.slice", 12: "/web.slice/x y"}
    back = scanfile.loads(scanfile.dumps(scan))
    assert back.memcgs == scan.memcgs
    assert back.pages.kcgroup is not None and np.array_equal(back.pages.kcgroup, scan.pages.kcgroup)
    meta, cols = unpack_npz(scanfile.dumps(scan), scanfile.SCHEMA)
    del cols["kcgroup"]
    with pytest.raises(BadSnapshot, match="corrupt system scan"):
        scanfile.loads(pack_npz(meta, dict(cols)))
