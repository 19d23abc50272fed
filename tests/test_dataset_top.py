"""`top --dataset` writes the `ranges` table too: a child with a known layout scanned by `top
--dataset` has the ranges `record --dataset` gives it, through DuckDB (`pmaps query`) and through
`pmaps diff ROOT --pid`. Needs root (kpageflags, kpagecount)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import pmaps_cmd
from memchild import MemChild

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags of a live child)")

# Bits that move without the child doing anything: KPF_REFERENCED (2) and KPF_IDLE (25), which
# DAMON and reclaim scans flip, and the young bit (39), which only record reads (the idle bitmap).
MOVING = (1 << 2) | (1 << 25) | (1 << 39)
ANON = ("a", "b", "t")  # the child's own anonymous regions: map count 1, nothing else maps them


def query(root: Path, sql: str) -> list[dict]:
    r = pmaps_cmd("query", str(root), sql, "--format", "json", "--bytes")
    return list(json.loads(r.stdout)["rows"])


def pages_of(root: Path, pid: int, regions: dict, seq_time: str) -> dict[str, tuple[list, list, list]]:
    """Per region: (page numbers, stable state, map count) of every page its ranges list, page by
    page (ranges may split differently where a moving bit differs)."""
    out = {}
    for name in ANON:
        start = f"{regions[name]['start']:x}"
        rows = query(root, "SELECT page, count, state, mapcount FROM ranges r WHERE pid = "
                     f"{pid} AND vma_start = '{start}' AND time = ({seq_time}) ORDER BY page")
        page = np.concatenate([np.arange(r["page"], r["page"] + r["count"]) for r in rows]) if rows else []
        state = np.repeat([r["state"] & ~MOVING for r in rows], [r["count"] for r in rows])
        mc = np.repeat([r["mapcount"] for r in rows], [r["count"] for r in rows])
        out[name] = (list(page), list(state), list(mc))
    return out


def changes(root: Path, pid: int, regions: dict) -> dict[str, list]:
    r = pmaps_cmd("diff", str(root), "--pid", str(pid), "--format", "json")
    doc = json.loads(r.stdout)
    out = {}
    for name in ANON:
        (v,) = [v for v in doc["vmas"] if v["start"] == regions[name]["start"]] or [{"changes": []}]
        out[name] = [((c["addr"] - regions[name]["start"]) >> 12, c["pages"], c["change"]) for c in v["changes"]
                     if c["change"] in ("freed", "present", "swapped")]
    return out


def test_top_dataset_ranges_are_records(tmp_path):
    top, rec = tmp_path / "top", tmp_path / "rec"
    with MemChild(["a:anon:1M", "b:anon:512K:skip=0-128", "z:zero:64K", "t:thp:4M"]) as mc:
        pid = mc.pid
        for step in (0, 1):
            r = pmaps_cmd("top", "--dataset", str(top), "-p", str(pid))
            assert "1 processes" in r.stderr and " ranges, " in r.stderr, r.stderr
            pmaps_cmd("record", str(pid), "--dataset", str(rec), "--count", "1", "-q")
            if step == 0:
                mc.cmd("touch b 10 20")
                mc.cmd("free a 0 5")
        regions = mc.regions
    # Every sample of both roots has its ranges, counted in the samples table.
    for root in (top, rec):
        got = query(root, "SELECT s.time, max(s.ranges) AS n, (SELECT count(*) FROM ranges r WHERE r.time = s.time "
                    f"AND r.pid = {pid}) AS rows FROM samples s WHERE s.pid = {pid} GROUP BY s.time")
        assert len(got) == 2 and all(g["n"] == g["rows"] > 0 for g in got), (root, got)
    for which in ("min", "max"):
        t = f"SELECT {which}(time) FROM samples WHERE pid = {pid}"
        a, b = pages_of(top, pid, regions, t), pages_of(rec, pid, regions, t)
        assert a == b, which
        assert len(a["a"][0]) == regions["a"]["pages"] - (5 if which == "max" else 0)
        assert set(a["a"][2]) == {1}
    # Both roots' identity columns of the ranges table agree (the join keys to samples).
    ids = "SELECT DISTINCT version, boot_id, pid, start_ticks, comm FROM ranges WHERE pid = " + str(pid)
    assert query(top, ids) == query(rec, ids) and len(query(top, ids)) == 1
    # diff ROOT --pid reads top's samples back: the same page changes as from record's.
    want = {"a": [(0, 5, "freed")], "b": [(10, 10, "present")], "t": []}
    assert changes(top, pid, regions) == changes(rec, pid, regions) == want


def test_top_dataset_needs_pages(tmp_path):
    r = pmaps_cmd("top", "--dataset", str(tmp_path / "x"), "--source", "rollup", check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "page-level" in r.stderr, r.stderr


def test_scan_ranges_come_in_batches(tmp_path):
    """scan_range_rows yields about `batch` rows at a time, one Parquet row group each, and the
    rows are those of each process's own sample (the scan's pages as ranges)."""
    import pyarrow.parquet as pq

    from pmaps.analysis.dataset import Identity, range_rows, scan_range_rows
    from pmaps.collector.system import scan_system
    from pmaps.model import Sample, Snapshot
    from pmaps.store.dataset import RANGE_COLUMNS, table_bytes

    with MemChild(["a:anon:1M:every=2"]) as m1, MemChild(["b:anon:512K:every=3"]) as m2:
        sc = scan_system([m1.pid, m2.pid])
    idents = {p.pid: Identity("h", "b", "k", p.pid, 1, 0.0, p.ident.comm, None, None, 0) for p in sc.procs}
    counts: dict[int, int] = {}
    batches = list(scan_range_rows(sc, idents, 3, counts, batch=100))
    sizes = [len(b["page"]) for b in batches]
    assert len(sizes) > 2 and set(sizes[:-1]) == {100} and 0 < sizes[-1] <= 100 and sum(sizes) == sum(counts.values())
    assert counts[m1.pid] >= 128 and counts[m2.pid] >= 42  # every other / third page: one range each
    want = []
    for p in sc.procs:
        s = Sample.of_snapshot(Snapshot(p.pid, p.ident.comm, p.vmas, sc.pages.take(slice(p.lo, p.hi)), sc.known,
                                        time=sc.time))
        s.seq = 3
        want.append(range_rows(s, idents[p.pid]))
    for k in want[0]:
        assert list(np.concatenate([b[k] for b in batches])) == list(np.concatenate([np.asarray(w[k]) for w in want]))
    f = tmp_path / "r.parquet"
    f.write_bytes(table_bytes(iter(batches), RANGE_COLUMNS))
    assert pq.ParquetFile(f).metadata.num_row_groups == len(batches)
    assert pq.read_table(f).num_rows == sum(sizes)
