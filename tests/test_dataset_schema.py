"""Schema evolution (docs/dataset.md): `pmaps query` reads a dataset as the union of its files'
schemas, so a column a newer pmaps added shows (NULL in older files) and one an older file lacks
reads as NULL; `diff` and `heatmap` read this version's columns from files of either; a column
whose types do not read as one is one line naming it and a file.

The dataset is recorded by `record --dataset` from a live child; then files are rewritten with
pyarrow as a newer writer (an added column, version 3) and an older one (a column missing) would
have written them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import pmaps_cmd
from memchild import MemChild

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb")


def parts(root: Path, table: str = "") -> list[Path]:
    """The part files of a table, in sample order (their names begin with the sample's time)."""
    base = root / table if table else root
    return sorted(base.glob("host=*/date=*/part-*.parquet"), key=lambda f: f.name)


def rewrite(f: Path, **cols: object) -> None:
    """Rewrite a part file as another pmaps version would have written it: each keyword sets a
    column (an array: added or replaced) or drops it (None)."""
    t = pq.read_table(f)
    for name, col in cols.items():
        if col is None:
            t = t.drop_columns([name])
        elif name in t.schema.names:
            t = t.set_column(t.schema.get_field_index(name), name, col)
        else:
            t = t.append_column(name, col)
    pq.write_table(t, f)


def query(root: Path, sql: str) -> list[dict]:
    r = pmaps_cmd("query", str(root), sql, "--format", "json", "--bytes")
    return list(json.loads(r.stdout)["rows"])


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """(the mixed dataset, the same samples untouched, the child's regions): three samples of a
    child; the first file lost `build_id` (an older writer), the last has a `numa_node` column and
    its ranges a `zone` column (a newer writer: version 3)."""
    base = tmp_path_factory.mktemp("evolve")
    pristine, mixed = base / "pristine", base / "mixed"
    with MemChild(["a:anon:1M", "f:file:256K"]) as mc:
        pmaps_cmd("record", str(mc.pid), "--dataset", str(pristine), "--count", "3", "--interval", "0.1", "-q")
        regions = mc.regions
    shutil.copytree(pristine, mixed)
    old, _, new = parts(mixed)
    rewrite(old, build_id=None)
    n = pq.read_metadata(new).num_rows
    rewrite(new, version=pa.array([3] * n, pa.int32()), numa_node=pa.array([i % 2 for i in range(n)], pa.int64()))
    new_ranges = parts(mixed, "_ranges")[-1]
    m = pq.read_metadata(new_ranges).num_rows
    rewrite(new_ranges, version=pa.array([3] * m, pa.int32()), zone=pa.array(["Normal"] * m))
    return mixed, pristine, regions


def test_query_shows_the_union_of_the_files_columns(datasets):
    from pmaps.store.dataset import COLUMNS, RANGE_COLUMNS

    mixed, pristine, _ = datasets
    r = pmaps_cmd("query", str(mixed), "SELECT * FROM samples LIMIT 1", "--format", "csv")
    names = r.stdout.splitlines()[0].split(",")
    assert names == [n for n, _ in COLUMNS] + ["numa_node", "host", "date"]  # this version's, the added, the keys
    rows = query(mixed, "SELECT seq, version, count(*) AS n, count(numa_node) AS numa, sum(numa_node) AS odd, "
                 "count(build_id) AS bids FROM samples GROUP BY seq, version ORDER BY seq")
    assert [(x["seq"], x["version"]) for x in rows] == [(0, 2), (1, 2), (2, 3)]  # `version` tells them apart
    old, mid, new = rows
    assert old["numa"] == mid["numa"] == 0 and old["odd"] is None and mid["odd"] is None  # NULL in older files
    assert new["numa"] == new["n"] and new["odd"] == new["n"] // 2
    assert old["bids"] == 0 and mid["bids"] == new["bids"] > 0  # the dropped column: NULL in that file only
    # A filter on the added column, pushed into the scan, skips the files without it.
    (hit,) = query(mixed, "SELECT count(*) AS n FROM samples WHERE numa_node = 1")
    assert hit["n"] == new["n"] // 2
    # The ranges view follows its files alike; every other value is the untouched dataset's.
    names = pmaps_cmd("query", str(mixed), "SELECT * FROM ranges LIMIT 1", "--format", "csv").stdout
    assert names.splitlines()[0].split(",") == [n for n, _ in RANGE_COLUMNS] + ["zone", "host", "date"]
    z = query(mixed, "SELECT seq, max(version) AS v, count(zone) AS z, count(*) AS n FROM ranges GROUP BY seq "
              "ORDER BY seq")
    assert [(x["seq"], x["v"], x["z"] == x["n"], x["z"]) for x in z][:2] == [(0, 2, False, 0), (1, 2, False, 0)]
    assert z[2]["v"] == 3 and z[2]["z"] == z[2]["n"] > 0
    # The partition columns come from every file's path.
    want = sorted({(f.parts[-3][5:], f.parts[-2][5:]) for f in parts(mixed) + parts(mixed, "_ranges")})
    for view in ("samples", "ranges"):
        got = query(mixed, f"SELECT DISTINCT host, date FROM {view} ORDER BY host, date")
        assert [(x["host"], x["date"]) for x in got] == want, view
    keep = "seq, vma_index, vma_start, rss, pss, uss, swap, known, ranges"
    sql = f"SELECT {keep} FROM samples ORDER BY seq, vma_index"
    assert query(mixed, sql) == query(pristine, sql)
    # A join USING columns (which DuckDB binds before pmaps has named its views) reads both views.
    sql = ("SELECT r.seq, sum(r.count) AS pages FROM ranges r JOIN samples s USING (host, boot_id, pid, start_ticks, "
           "time, vma_index) GROUP BY r.seq ORDER BY r.seq")
    got = query(mixed, sql)
    assert len(got) == 3 and got == query(pristine, sql)


def test_diff_and_heatmap_read_older_and_newer_files(datasets, run, tmp_path):
    """diff and heatmap over the rewritten files give what they give over the untouched ones."""
    from pmaps.commands._dataset import Selection
    from pmaps.render.heatmap import build

    mixed, pristine, regions = datasets
    for at in (["0", "-1"], ["0", "1"], ["1", "2"]):
        argv = [x for a in at for x in ("--at", a)]
        got, want = run("diff", str(mixed), *argv), run("diff", str(pristine), *argv)
        assert got.code == want.code == 0, got.err
        assert got.out.splitlines()[2:] == want.out.splitlines()[2:]  # the two header lines name ROOT
    js = json.loads(run("diff", str(mixed), "--at", "0", "--at", "-1", "--format", "json").out)
    assert not [v for v in js["vmas"] if v["start"] in (regions["a"]["start"], regions["f"]["start"])]

    class Args:
        host = pid = start_ticks = None

    a, b = Selection(str(mixed), Args()), Selection(str(pristine), Args())
    ha, hb = build(a.load(a.between(None, None)), 400), build(b.load(b.between(None, None)), 400)
    assert len(ha.times) == 3 and np.array_equal(ha.image, hb.image) and ha.vma_edges == hb.vma_edges
    pytest.importorskip("matplotlib")
    r = run("heatmap", str(mixed), "-o", str(tmp_path / "h.png"))
    assert r.code == 0 and "3 samples" in r.err, r.err


def test_compatible_types_read_as_the_wider_one(datasets, tmp_path):
    """An added column written int32 by one file and int64 by another reads as BIGINT; a column of
    this version written narrower (seq as int32) reads as this version's type."""
    root = tmp_path / "widen"
    shutil.copytree(datasets[0], root)
    _, mid, _ = parts(root)
    n = pq.read_metadata(mid).num_rows
    rewrite(mid, numa_node=pa.array([7] * n, pa.int32()), seq=pa.array([1] * n, pa.int32()))
    rows = query(root, "SELECT seq, typeof(numa_node) AS t, typeof(seq) AS st, max(numa_node) AS m FROM samples "
                 "GROUP BY ALL ORDER BY seq")
    assert [(x["seq"], x["t"], x["st"], x["m"]) for x in rows] == [(0, "BIGINT", "BIGINT", None),
                                                                   (1, "BIGINT", "BIGINT", 7),
                                                                   (2, "BIGINT", "BIGINT", 1)]


def test_incompatible_types_are_one_line(datasets, run, tmp_path):
    """A column whose types do not read as one: query says which column and which files, in one
    line and exit 6, for an added column and for one of this version; diff and heatmap, which
    read only the columns they need, mind only those."""
    root = tmp_path / "clash"
    shutil.copytree(datasets[0], root)
    old, mid, new = parts(root)
    rel = lambda f: str(f.relative_to(root))
    n = pq.read_metadata(mid).num_rows
    rewrite(mid, numa_node=pa.array(["zero"] * n))  # text here, int64 in the newest file
    r = pmaps_cmd("query", str(root), "SELECT count(*) FROM samples", check=False)
    assert r.returncode == 6 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "column 'numa_node' is " in r.stderr and rel(mid) in r.stderr and rel(new) in r.stderr, r.stderr
    assert run("query", str(root), "SELECT count(*) AS n FROM ranges").code == 0  # the other view still reads
    res = run("diff", str(root), "--at", "0", "--at", "-1")
    assert res.code == 0, res.err  # not a column diff reads
    # One of this version's columns in another type: query says so; diff does not read it.
    n = pq.read_metadata(old).num_rows
    rewrite(old, rss=pa.array(["1M"] * n))
    r = pmaps_cmd("query", str(root), "SELECT max(numa_node) FROM samples", check=False)
    assert r.returncode == 6 and r.stderr.count("\n") == 1, r.stderr
    assert f"column 'rss' is string in {rel(old)} but int64 in this pmaps version's schema" in r.stderr, r.stderr
    assert run("diff", str(root), "--at", "0", "--at", "-1").code == 0
    # One diff and heatmap read: they say so, in one line.
    rewrite(old, vma_size=pa.array([4096.0] * n))
    for argv in (("diff", str(root)), ("heatmap", str(root), "-o", str(tmp_path / "h.png"))):
        res = run(*argv)
        assert res.code == 6 and res.err.count("\n") == 1 and "Traceback" not in res.err, (argv, res.err)
        assert f"column 'vma_size' is double in {rel(old)} but int64" in res.err, (argv, res.err)
