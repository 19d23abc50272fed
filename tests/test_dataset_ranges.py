"""The dataset's `ranges` table: `pmaps diff ROOT` and `pmaps heatmap ROOT` read a process's samples
back from a fleet dataset and give exactly what they give from the same samples as a recording.

The golden pair (time_a/time_b) runs anywhere; a live child recorded by `record --dataset` needs
root (kpageflags)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from memchild import MemChild
from pmaps.analysis.dataset import VERSION, Identity, range_rows, sample_rows
from pmaps.analysis.diff import diff_samples
from pmaps.model import Sample
from pmaps.render.diff import DiffView
from pmaps.render.output import write
from pmaps.store.recorder import Recorder
from pmaps.store.recording import load_recording, load_sample

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
GOLDEN = Path(__file__).parent / "golden"
PAIR = (GOLDEN / "time_a.parquet", GOLDEN / "time_b.parquet")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags of a live child)")


def ident(s: Sample, host: str = "alpha", ticks: int = 1234) -> Identity:
    return Identity(host, "boot-1", "6.18.0", s.pid, ticks, 1795999000.0, s.comm, "/usr/bin/memchild", "/", 0)


def put(root: Path, samples: list[Sample], host: str = "alpha", ticks: int = 1234, ranges: bool = True) -> None:
    """Write samples as record --dataset does: one part file (and one ranges file) per sample."""
    from pmaps.store.dataset_writer import DatasetWriter

    w = DatasetWriter(str(root), host)
    for s in samples:
        i = ident(s, host, ticks)
        w.write(sample_rows(s, i, {}, ranges=ranges), s.time, s.pid, s.seq, range_rows(s, i) if ranges else None)


@pytest.fixture
def golden_ds(tmp_path):
    root = tmp_path / "fleet"
    put(root, [load_sample(p) for p in PAIR])
    return root


def body(text: str) -> list[str]:
    """A diff's text without its two header lines (they name the source)."""
    return text.splitlines()[2:]


@pytest.mark.parametrize("fmt", ["text", "csv", "ndjson", "json"])
def test_diff_from_dataset_is_the_golden_diff(run, golden_ds, fmt, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    want = run("diff", "time_a.parquet", "time_b.parquet", "--format", fmt)
    got = run("diff", str(golden_ds), "--format", fmt)  # one host, one process: the last two samples
    assert want.code == got.code == 0, got.err
    if fmt == "text":
        assert body(got.out) == body(want.out) == body((GOLDEN / "diff.txt").read_text())
        assert got.out.splitlines()[:2] == [
            f"# A: {golden_ds} host=alpha sample 0 (pid 4242 memchild)  1970-01-01 00:16:40.000Z",
            f"# B: {golden_ds} host=alpha sample 1 (pid 4242 memchild)  1970-01-01 00:16:42.500Z  (+2.500s)"]
    elif fmt == "json":
        a, b = json.loads(got.out), json.loads(want.out)
        assert a["a"]["time"] == b["a"]["time"] and a["b"]["time"] == b["b"]["time"]
        assert {k: v for k, v in a.items() if k not in "ab"} == {k: v for k, v in b.items() if k not in "ab"}
    else:
        assert got.out == want.out == (GOLDEN / f"diff.{fmt}").read_text()
    # The same two samples chosen explicitly, by index and by time.
    for at in (["0", "1"], ["-2", "-1"], ["1970-01-01T00:16:41Z", "1970-01-01 00:16:42.5"]):
        again = run("diff", str(golden_ds), "--format", fmt, *[x for t in at for x in ("--at", t)])
        assert again.code == 0 and again.out == got.out, (at, again.err)


def test_samples_round_trip(golden_ds):
    """Every column of a sample comes back from the dataset (PFNs are never stored)."""
    from pmaps.store.dataset_reader import DatasetReader

    r = DatasetReader(str(golden_ds))
    assert r.hosts() == ["alpha"]
    (proc,) = r.processes("alpha")
    assert (proc.pid, proc.start_ticks, proc.boot_id, proc.comm, proc.seqs) == (4242, 1234, "boot-1", "memchild",
                                                                                 (0, 1))
    for want, got in zip([load_sample(p) for p in PAIR], r.samples(proc, list(proc.times_us))):
        assert got.vmas == want.vmas and got.known == want.known and got.exclusive_known == want.exclusive_known
        assert (got.pid, got.comm, got.time, got.seq) == (want.pid, want.comm, want.time, want.seq)
        for c in ("vma", "vpn", "count", "state", "mapcount"):
            assert np.array_equal(getattr(got, c), getattr(want, c)), c
            assert getattr(got, c).dtype == getattr(want, c).dtype, c
        assert got.pfn is None


def test_ranges_table_columns(golden_ds):
    from pmaps.store.dataset import RANGE_COLUMNS, RANGES_DIR

    files = sorted((golden_ds / RANGES_DIR).rglob("part-*.parquet"))
    assert len(files) == 2 and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    t = pq.read_table(files[0])
    assert t.schema.names == [n for n, _ in RANGE_COLUMNS] and "pfn" not in t.schema.names
    for f in t.schema:
        assert not pa.types.is_unsigned_integer(f.type), f
    a = load_sample(PAIR[0])
    d = t.to_pydict()
    assert d["version"] == [VERSION] * len(a) and d["count"] == a.count.tolist()
    assert d["state"] == a.state.astype(np.int64).tolist() and d["mapcount"] == a.mapcount.tolist()
    starts = [a.vmas[i].start for i in a.vma.tolist()]
    assert [s + (p << 12) for s, p in zip(starts, d["page"])] == (a.vpn << np.uint64(12)).tolist()
    assert d["vma_start"] == [f"{s:x}" for s in starts]
    samples = pq.read_table(sorted(golden_ds.glob("host=*/date=*/part-*.parquet"))[0]).to_pydict()
    assert set(samples["ranges"]) == {len(a)} and set(samples["known"]) == {"pfn,flags,count,categories,exclusive"}
    assert samples["dev"] == [v.dev for v in a.vmas] and samples["inode"] == [v.inode for v in a.vmas]


def test_query_views_ranges(run, golden_ds):
    pytest.importorskip("duckdb")
    sql = ("SELECT r.seq, s.mapping, sum(r.count) AS pages FROM ranges r JOIN samples s ON s.pid = r.pid "
           "AND s.start_ticks = r.start_ticks AND s.time = r.time AND s.vma_index = r.vma_index "
           "GROUP BY r.seq, s.mapping ORDER BY r.seq, s.mapping")
    res = run("query", str(golden_ds), sql, "--format", "csv")
    assert res.code == 0, res.err
    want = ["seq,mapping,pages"]
    for s in (load_sample(p) for p in PAIR):
        per: dict[str, int] = {}
        for i, n in zip(s.vma.tolist(), s.count.tolist()):
            v = s.vmas[i]
            name = v.path or "[anon]"
            per[name] = per.get(name, 0) + n
        want += [f"{s.seq},{k},{per[k]}" for k in sorted(per)]
    assert res.out.splitlines() == want


def test_heatmap_from_dataset_is_the_recordings(run, golden_ds, tmp_path):
    from pmaps.commands._dataset import Selection
    from pmaps.render.heatmap import build

    rec = tmp_path / "rec"
    rec.mkdir()
    for i, p in enumerate(PAIR):
        shutil.copy(p, rec / f"sample-{i:06d}.parquet")

    class Args:
        host = pid = start_ticks = None

    sel = Selection(str(golden_ds), Args())
    a, b = build(load_recording(rec)[0], 300), build(sel.load(sel.between(None, None)), 300)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.times, b.times)
    assert a.vma_edges == b.vma_edges and a.total_pages == b.total_pages
    pytest.importorskip("matplotlib")
    res = run("heatmap", str(golden_ds), "-o", str(tmp_path / "h.svg"), "--since", "1970-01-01T00:16:40Z")
    assert res.code == 0 and "2 samples" in res.err, res.err
    assert (tmp_path / "h.svg").read_bytes()[:200].find(b"<svg") >= 0


def test_old_and_top_datasets_still_read(run, tmp_path):
    """Version-1 files (no ranges, no dev/inode/known columns) beside version-2 ones still query;
    diff says what is missing from them."""
    from pmaps.store.dataset import COLUMNS

    root = tmp_path / "old"
    a, b = (load_sample(p) for p in PAIR)
    put(root, [a, b], ranges=False)
    for f in root.rglob("part-*.parquet"):  # drop the version-2 columns: files as version 1 wrote them
        t = pq.read_table(f)
        pq.write_table(t.select([n for n, _ in COLUMNS[:-4]]).set_column(0, "version", pa.array([1] * len(t),
                                                                                               pa.int32())), f)
    if _duckdb():
        res = run("query", str(root), "SELECT count(*) AS n FROM ranges", "--format", "csv")
        assert res.code == 0 and res.out.splitlines() == ["n", "0"], res.err
    put(root, [b], host="beta")
    if _duckdb():
        res = run("query", str(root), "SELECT host, max(version) AS v, count(*) AS n, count(known) AS k, "
                  "max(ranges) AS r FROM samples GROUP BY host ORDER BY host", "--format", "csv")
        assert res.code == 0, res.err
        assert res.out.splitlines() == ["host,v,n,k,r", f"alpha,1,{2 * len(a.vmas)},0,",
                                        f"beta,2,{len(b.vmas)},{len(b.vmas)},{len(b)}"]
    res = run("diff", str(root), "--host", "alpha")
    assert res.code == 1 and res.err.count("\n") == 1 and "has no page ranges" in res.err, res.err
    res = run("diff", str(root), "--host", "beta", "--at", "0", "--at", "-1")
    assert res.code == 0 and "no page changed state" in res.out, res.err


def _duckdb() -> bool:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def test_selection_errors_are_one_line(run, golden_ds, tmp_path):
    a, b = (load_sample(p) for p in PAIR)
    put(golden_ds, [a, b], host="beta")
    put(golden_ds, [b], host="gamma", ticks=99)
    put(golden_ds, [a], host="gamma", ticks=7)
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(PAIR[0], rec / "sample-000000.parquet")
    cases = [
        ((), 2, "holds 3 hosts (alpha, beta, gamma): choose one with --host"),
        (("--host", "delta"), 2, "no host 'delta' (hosts: alpha, beta, gamma)"),
        (("--host", "alpha", "--pid", "77"), 2, "no pid 77 on host alpha"),
        (("--host", "alpha", "--pid", "x"), 2, "not a process ID"),
        (("--host", "gamma"), 2, "2 processes on host gamma"),
        (("--host", "gamma", "--pid", "4242", "--start-ticks", "99"), 2, "has one sample on host gamma"),
        (("--host", "gamma", "--pid", "4242", "--start-ticks", "5"), 2, "no pid 4242 started at tick 5"),
        (("--host", "alpha", "--at", "2"), 2, "--at 2: the process has 2 samples"),
        (("--host", "alpha", "--at", "1970-01-01T00:00:01Z", "--at", "1"), 2, "no sample of pid 4242 at or before"),
        (("--host", "alpha", "--at", "yesterday"), 2, "not a sample index nor a time"),
        (("--host", "alpha", "--at", "0", "--at", "1", "--at", "1"), 2, "at most twice"),
    ]
    for argv, code, msg in cases:
        r = run("diff", str(golden_ds), *argv)
        assert r.code == code and r.err.count("\n") == 1 and msg in r.err, (argv, r.err)
    r = run("diff", str(golden_ds), str(golden_ds), "--host", "alpha")
    assert r.code == 2 and "not from B" in r.err
    r = run("diff", str(rec), str(rec), "--host", "alpha")
    assert r.code == 2 and r.err.count("\n") == 1 and "--host chooses samples of a dataset ROOT" in r.err
    r = run("heatmap", str(golden_ds), "-o", str(tmp_path / "x.png"), "--host", "alpha", "--until", "1970-01-01")
    assert r.code == 2 and r.err.count("\n") == 1 and "no sample of pid 4242 between" in r.err, r.err
    # One of two samples picked: that one against the last.
    r = run("diff", str(golden_ds), "--host", "beta", "--at", "0")
    assert r.code == 0 and body(r.out) == body((GOLDEN / "diff.txt").read_text())


def test_damaged_dataset_is_one_line(run, golden_ds):
    from pmaps.store.dataset import RANGES_DIR

    ranges = sorted((golden_ds / RANGES_DIR).rglob("part-*.parquet"))
    ranges[1].unlink()  # a torn write: the sample's ranges file is gone
    r = run("diff", str(golden_ds))
    assert r.code == 6 and r.err.count("\n") == 1 and "0 range rows, 9 written" in r.err, r.err
    f = sorted(golden_ds.glob("host=*/date=*/part-*.parquet"))[0]
    f.write_bytes(f.read_bytes()[:100])  # a truncated samples file
    r = run("diff", str(golden_ds))
    assert r.code == 6 and r.err.count("\n") == 1 and "corrupt dataset file" in r.err, r.err
    f.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    r = run("heatmap", str(golden_ds), "-o", str(golden_ds.parent / "h.png"))
    assert r.code == 6 and r.err.count("\n") == 1 and "corrupt dataset file" in r.err, r.err
    if _duckdb():
        r = run("query", str(golden_ds), "SELECT count(*) FROM samples")
        assert r.code == 6 and r.err.count("\n") == 1 and "corrupt dataset file" in r.err and f.name in r.err, r.err


@needs_root
def test_live_child_round_trip(run, tmp_path):
    """A child with a known layout, sampled twice around known changes, written both as a recording
    and into a dataset (record --dataset's writer): diff and heatmap give the same output from both,
    and the same as from the samples in memory."""
    from pmaps.collector import Process, take_sample
    from pmaps.commands._dataset import DatasetRecorder
    from pmaps.render.heatmap import build

    root, rec = tmp_path / "fleet", tmp_path / "rec"
    with MemChild(["a:anon:256K", "b:anon:512K:skip=0-128", "z:zero:64K", "t:thp:4M"]) as mc, \
            Process(mc.pid) as proc:
        dr = DatasetRecorder(str(root), mc.pid)
        r = Recorder(rec, mc.pid, proc.comm, 1.0).open()
        s0 = take_sample(proc, seq=0)
        mc.cmd("touch b 10 20")
        mc.cmd("free a 0 5")
        mc.cmd("touch z 3 7")
        s1 = take_sample(proc, seq=1)
        for s in (s0, s1):
            dr.add(s)
            r.add(s)
        dr.finish("count")
        r.finish("count")
        regions = mc.regions
    mem = __import__("io").StringIO()
    write(DiffView(diff_samples(s0, s1)), mem, "text", "human")
    from_rec = run("diff", str(rec))
    from_ds = run("diff", str(root), "--pid", str(s0.pid))
    assert from_rec.code == from_ds.code == 0, from_ds.err
    assert body(from_ds.out) == body(from_rec.out) == body(mem.getvalue())
    js = json.loads(run("diff", str(root), "--format", "json").out)
    (va,) = [v for v in js["vmas"] if v["start"] == regions["a"]["start"]]
    assert [((c["addr"] - va["start"]) >> 12, c["pages"], c["change"]) for c in va["changes"]] == [(0, 5, "freed")]
    (vb,) = [v for v in js["vmas"] if v["start"] == regions["b"]["start"]]
    assert [((c["addr"] - vb["start"]) >> 12, c["pages"], c["change"]) for c in vb["changes"]] == [(10, 10, "present")]
    for fmt in ("csv", "ndjson"):
        assert run("diff", str(root), "--format", fmt).out == run("diff", str(rec), "--format", fmt).out
    from pmaps.commands._dataset import Selection

    class Args:
        host = start_ticks = None
        pid = str(s0.pid)

    sel = Selection(str(root), Args())
    back = sel.load(sel.between(None, None))
    ha, hb, hc = build(load_recording(rec)[0], 800), build(back, 800), build([s0, s1], 800)
    for h in (hb, hc):
        assert np.array_equal(ha.image, h.image) and ha.vma_edges == h.vma_edges
        assert np.allclose(ha.times, h.times, atol=2e-6)
    # The ranges of the known regions: a's first 5 pages gone, t one THP-backed run (or 4K pages).
    for s, got in zip((s0, s1), back):
        assert got.vmas == s.vmas and np.array_equal(got.state, s.state) and np.array_equal(got.count, s.count)


# -- damaged and oversized files: one line, exit 6, never a traceback nor gigabytes ------------
def _part(root: Path, table: str = "", k: int = -1) -> Path:
    """A part file of the samples table (or of `ranges` with table=RANGES_DIR), in sample order."""
    return sorted((root / table).glob("host=*/date=*/part-*.parquet"), key=lambda f: f.name)[k]


def _not_utf8(n: int) -> pa.Array:
    """n strings of bytes that are not UTF-8 (0xff 0x9b), which pyarrow writes unchecked."""
    offsets = pa.array(range(0, 2 * n + 1, 2), pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(b"\xff\x9b" * n)])


def _set_column(f: Path, name: str, value: object) -> None:
    """Rewrite a part file with one column replaced: null, not UTF-8, or one value on every row."""
    t = pq.read_table(f)
    i, typ, n = t.schema.get_field_index(name), t.schema.field(name).type, len(t)
    col = pa.nulls(n, typ) if value is None else _not_utf8(n) if value == "not utf-8" else pa.array([value] * n, typ)
    pq.write_table(t.set_column(i, name, col), f)


@pytest.mark.parametrize("table, column, value, why", [
    # the audit's case: diff and heatmap sorted None with ints (TypeError) ...
    ("", "time", None, "column time holds nulls"), ("", "comm", None, "column comm holds nulls"),
    ("", "vma_start", None, "column vma_start holds nulls"), ("", "vma_size", None, "column vma_size holds nulls"),
    ("", "seq", None, "column seq holds nulls"), ("", "boot_id", None, "column boot_id holds nulls"),
    ("", "pid", None, "column pid holds nulls"), ("", "start_ticks", None, "column start_ticks holds nulls"),
    ("", "vma_index", None, "column vma_index holds nulls"), ("", "perms", None, "column perms holds nulls"),
    ("ranges", "vma_start", None, "column vma_start holds nulls"), ("ranges", "page", None, "column page holds nulls"),
    # ... or decoded a string column that is not UTF-8 (UnicodeDecodeError)
    ("", "comm", "not utf-8", "column comm holds text that is not UTF-8"),
    ("", "path", "not utf-8", "column path holds text that is not UTF-8"),
    ("", "boot_id", "not utf-8", "column boot_id holds text that is not UTF-8"),
    ("", "perms", "not utf-8", "column perms holds text that is not UTF-8"),
    ("", "known", "not utf-8", "column known holds text that is not UTF-8"),
    ("ranges", "vma_start", "not utf-8", "column vma_start holds text that is not UTF-8"),
    # values no pmaps writes: a time past 2^40 s (iso_us would overflow), pid 0, a path past the cap
    ("", "time", 1 << 62, "column time holds 4611686018427387904, out of range"),
    ("", "pid", 0, "column pid holds 0, out of range"),
    ("", "path", "/" + "x" * 20000, "column path holds a text of 20001 bytes"),
])
def test_corrupt_rows_are_one_line(run, golden_ds, tmp_path, table, column, value, why):
    """A null where pmaps always writes a value, text that is not UTF-8 or a value out of range:
    one line naming the file and what is wrong, exit 6 (as `pmaps query` on the same data)."""
    from pmaps.store.dataset import RANGES_DIR

    f = _part(golden_ds, RANGES_DIR if table else "")
    _set_column(f, column, value)
    argv = [("diff", str(golden_ds))]
    if importlib.util.find_spec("matplotlib"):
        argv.append(("heatmap", str(golden_ds), "-o", str(tmp_path / "h.png")))
    for a in argv:
        r = run(*a)
        assert r.code == 6 and r.err.count("\n") == 1 and "Traceback" not in r.err, (a, r.err)
        assert f"corrupt dataset file {f.relative_to(golden_ds)} ({why})" in r.err, (a, r.err)


def _copies(f: Path, n: int, into: Path) -> None:
    """A part file `into` of n copies of the first row of `f` (the same sample): zstd makes it
    a few kilobytes, as the audit's 0.7 MB of 4 M rows."""
    t = pq.read_table(f)
    pq.write_table(t.take(pa.array(np.zeros(n, np.int64))), into, compression="zstd")


def _peak(fn):  # -> (fn(), the peak of Python's allocations while it ran: objects, numpy arrays)
    import tracemalloc

    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sample_rows_past_the_cap_are_refused_unread(run, golden_ds, monkeypatch):
    """A sample with more VMA rows than a sample holds (MAX_VMAS, lowered here) is corrupt, said
    before its rows are read: copies of one row made 4 M Python objects per column (5.3 GB)."""
    from pmaps.store import dataset_reader

    monkeypatch.setattr(dataset_reader, "MAX_VMAS", 50_000)
    last = _part(golden_ds)
    _copies(last, 300_000, last.with_name(last.name[:-len("000001.parquet")] + "000099.parquet"))
    n = pq.read_metadata(last).num_rows + 300_000
    for argv in (("diff", str(golden_ds)), ("diff", str(golden_ds), "--at", "1", "--at", "0")):
        r, peak = _peak(lambda a=argv: run(*a))
        assert r.code == 6 and r.err.count("\n") == 1, r.err
        assert f"at 1970-01-01T00:16:42.500000Z: corrupt dataset rows ({n} VMA rows: more than a sample holds, 50000)" \
            in r.err, r.err
        assert peak < 16 << 20, peak  # was 300,000 rows x 13 columns of Python objects
    r = run("diff", str(golden_ds), "--at", "0", "--at", "0")  # the other sample still reads
    assert r.code == 0 and "no page changed state" in r.out, r.err


def test_range_rows_past_those_written_are_refused_early(run, golden_ds):
    """More range rows than the sample says it wrote: refused at the first batch past them, not
    once all are read (50 M copies of one row, 2.8 MB, took 11.8 GB)."""
    from pmaps.store.dataset import RANGES_DIR

    last = _part(golden_ds, RANGES_DIR)
    bomb = last.with_name(last.name[:-len("000001.parquet")] + "000099.parquet")
    _copies(last, 300_000, bomb)
    r, peak = _peak(lambda: run("diff", str(golden_ds)))
    assert r.code == 6 and r.err.count("\n") == 1, r.err
    assert f"corrupt dataset rows (more than 9 range rows, the last in {bomb.relative_to(golden_ds)})" in r.err, r.err
    assert peak < 16 << 20, peak  # was a Python string per range row and their sort


def test_ranges_declared_past_the_cap(run, golden_ds, monkeypatch):
    """A sample declaring more range rows than a sample file may hold (MAX_ROWS, lowered here)."""
    from pmaps.store import dataset_reader

    monkeypatch.setattr(dataset_reader, "MAX_ROWS", 5)
    r = run("diff", str(golden_ds))
    assert r.code == 6 and r.err.count("\n") == 1, r.err
    assert f"corrupt dataset file {_part(golden_ds).relative_to(golden_ds)} (column ranges holds 9, out of range)" \
        in r.err, r.err


def test_copies_of_a_vma_row_stop_at_the_second(run, golden_ds):
    """Under the cap, copies of one VMA row are refused as they come (a vma_index seen twice),
    not once all are read and converted (the old path: 13 Python objects a row)."""
    last = _part(golden_ds)
    bomb = last.with_name(last.name[:-len("000001.parquet")] + "000099.parquet")
    _copies(last, 300_000, bomb)
    r, peak = _peak(lambda: run("diff", str(golden_ds)))
    assert r.code == 6 and r.err.count("\n") == 1, r.err
    assert f"corrupt dataset rows (VMA rows are not numbered 0..n-1: {bomb.relative_to(golden_ds)})" in r.err, r.err
    assert peak < 16 << 20, peak
