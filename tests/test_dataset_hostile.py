"""A dataset ROOT from another machine or an attacker: what `pmaps query`, `diff ROOT` and `heatmap
ROOT` read below ROOT is refused in one line (exit 6, a selection too large exit 2), never
followed out of ROOT, never waited on, never a traceback or gigabytes.

Links and FIFOs below ROOT, partition directories pmaps does not write, a host of more samples than
diff reads, a query whose files decode to gigabytes (copies of one row in one row group, one long
text on every row) or whose result has millions of values (docs/dataset.md, "Reading hostile
datasets")."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
GOLDEN = Path(__file__).parent / "golden"
PAIR = (GOLDEN / "time_a.parquet", GOLDEN / "time_b.parquet")
DAY = "date=1970-01-01"  # the golden samples' date
AS_LIMIT = 8 << 30  # address space of every pmaps run here: a bomb that is not bounded fails, never swaps


def _duckdb() -> bool:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


needs_duckdb = pytest.mark.skipif(not _duckdb(), reason="pmaps query needs duckdb")


def put(root: Path, host: str = "alpha") -> None:
    """The golden pair as record --dataset writes it: a part file and a ranges file per sample."""
    from pmaps.analysis.dataset import Identity, range_rows, sample_rows
    from pmaps.store.dataset_writer import DatasetWriter
    from pmaps.store.recording import load_sample

    w = DatasetWriter(str(root), host)
    for s in (load_sample(p) for p in PAIR):
        i = Identity(host, "boot-1", "6.18.0", s.pid, 1234, 1795999000.0, s.comm, "/usr/bin/memchild", "/", 0)
        w.write(sample_rows(s, i, {}, ranges=True), s.time, s.pid, s.seq, range_rows(s, i))


@pytest.fixture
def ds(tmp_path):
    root = tmp_path / "fleet"
    put(root)
    return root


def parts(root: Path, table: str = "") -> list[Path]:
    return sorted((root / table).glob(f"host=alpha/{DAY}/part-*.parquet"), key=lambda f: f.name)


def pmaps(*argv: str, timeout: float = 120) -> tuple[int, str, str, int]:
    """(exit code, stdout, stderr, peak RSS in bytes: the kernel's accounting of that child alone)
    of `python -m pmaps ARGV`, held to AS_LIMIT of address space. A FIFO opened without O_NONBLOCK
    would block the open: past the timeout the test fails."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MALLOC_ARENA_MAX": "2"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, "-m", "pmaps", *argv], stdout=out, stderr=err, env=env,
                             preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while not (done := os.wait4(p.pid, os.WNOHANG))[0]:
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                raise AssertionError(f"pmaps {argv} still running after {timeout} s (a FIFO opened?)")
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(done[1])
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), done[2].ru_maxrss * 1024


def refused(code: int, err: str, want: int, *texts: str) -> None:
    """One line (escaped), `want` as exit code, every text in it."""
    assert code == want and err.count("\n") == 1 and err.startswith("pmaps: "), (code, err)
    assert "Traceback" not in err and "\x1b" not in err, err
    for t in texts:
        assert t in err, (t, err)


def readers(root: Path, table: str = "") -> list[tuple[str, ...]]:
    """The commands that read ROOT: diff (the samples and their ranges), query (the table)."""
    out = [("diff", str(root))]
    if _duckdb():
        out.append(("query", str(root), f"SELECT count(*) FROM {'ranges' if table else 'samples'}"))
    return out


# -- links and FIFOs below ROOT --------------------------------------------------------------
LINKS = {  # what is replaced by a link to a copy outside ROOT -> the path the message names, its kind
    "host": ("host=alpha", "directory"),
    "date": (f"host=alpha/{DAY}", "directory"),
    "part": (f"host=alpha/{DAY}/PART", "regular file"),
    "ranges": ("_ranges", "directory"),
    "ranges host": ("_ranges/host=alpha", "directory"),
    "ranges part": (f"_ranges/host=alpha/{DAY}/PART", "regular file"),
}


@pytest.mark.parametrize("what", list(LINKS))
def test_links_below_root_are_refused(ds, tmp_path, what):
    """A partition directory or a part file that is a symlink (here to a copy of itself outside
    ROOT: it reads as a sound dataset when followed) is refused, naming it; before, pmaps followed
    it (as root: any file of the machine)."""
    rel, kind = LINKS[what]
    table = "_ranges" if rel.startswith("_ranges") else ""
    rel = rel.replace("PART", parts(ds, table)[-1].name)
    outside = tmp_path / "outside" / rel
    outside.parent.mkdir(parents=True)
    shutil.move(ds / rel, outside)
    (ds / rel).symlink_to(outside)
    for argv in readers(ds, table):
        code, _, err, _ = pmaps(*argv)
        refused(code, err, 6, f"corrupt dataset: {rel} is a symbolic link, not a {kind}")


def test_fifo_posing_as_a_part_file(ds):
    """A FIFO named as a part file: refused without being opened (an open would block until a
    writer came); before, it was skipped without a word."""
    for table in ("", "_ranges"):
        fifo = ds / table / "host=alpha" / DAY / "part-1000-1-2-000003.parquet"
        os.mkfifo(fifo)
        for argv in readers(ds, table):
            code, _, err, _ = pmaps(*argv, timeout=60)
            refused(code, err, 6, f"{fifo.relative_to(ds)} is a FIFO, not a regular file")
        fifo.unlink()


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_file_swapped_after_the_listing(ds, tmp_path, swap):
    """A part file replaced by a link or a FIFO between the listing and the open (a writer racing
    the reader): every open goes from ROOT through O_NOFOLLOW descriptors, the file O_NONBLOCK and
    checked with fstat, so neither is followed nor waited on."""
    victim = parts(ds)[-1]
    code = f"""
import os, shutil, sys
from pathlib import Path
from pmaps.cli import main
from pmaps.store import dataset_checks
listed = dataset_checks.Tree.parts
def parts(self, table="", host=None):
    out = listed(self, table, host)
    v = Path({str(victim)!r})
    if v.is_file() and not v.is_symlink():
        shutil.move(v, {str(tmp_path / "moved.parquet")!r})
        if {swap!r} == "symlink":
            v.symlink_to({str(tmp_path / "moved.parquet")!r})
        else:
            os.mkfifo(v)
    return out
dataset_checks.Tree.parts = parts
sys.exit(main(sys.argv[1:]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", code, "diff", str(ds)], capture_output=True, text=True, env=env,
                       timeout=60)
    kind = "a symbolic link" if swap == "symlink" else "a FIFO"
    refused(r.returncode, r.stderr, 6, f"pmaps: {ds}: corrupt dataset: {victim.relative_to(ds)} is {kind}, not a "
            "regular file (below ROOT the readers follow no link and read only regular files)")


def test_root_itself_may_be_a_link(ds, tmp_path):
    """ROOT is the user's choice: a link to the dataset reads as the dataset."""
    link = tmp_path / "link"
    link.symlink_to(ds)
    for argv in readers(link):
        code, _, err, _ = pmaps(*argv)
        assert code == 0 and not err, err


# -- partition directories pmaps does not write -------------------------------------------------
BAD = [  # (a directory below ROOT holding a part file, the part of it the message names, why)
    ("host=a b/" + DAY, "host=a b", "is not a host partition pmaps writes"),
    ("host=\x1b[2J\x07/" + DAY, "host=\\x1b[2J\\x07", "is not a host partition pmaps writes"),
    ("host=\udcff\udc9b/" + DAY, "host=\\xff\\x9b", "is not a host partition pmaps writes"),  # not UTF-8
    ("host=/" + DAY, "host=", "is not a host partition pmaps writes"),
    ("host=..%2F..%2Fetc/" + DAY, "host=..%2F..%2Fetc", "is not a host partition pmaps writes"),
    ("host=" + "a" * 65 + "/" + DAY, "host=" + "a" * 65, "is not a host partition pmaps writes"),
    ("pid=abc/" + DAY, "pid=abc", "is not a partition of a pmaps dataset"),
    ("host=alpha/date=1970-13-01", "host=alpha/date=1970-13-01", "is not a date partition pmaps writes"),
    ("host=alpha/date=yesterday", "host=alpha/date=yesterday", "is not a date partition pmaps writes"),
    ("host=alpha/pid=..", "host=alpha/pid=..", "is not a partition of a pmaps dataset"),
    ("host=alpha/host=beta/" + DAY, "host=alpha/host=beta", "repeats or misplaces the partition key 'host'"),
    ("host=alpha/date=1970-01-01/date=1970-01-02", "host=alpha/date=1970-01-01/date=1970-01-02",
     "is a partition below date="),
    ("host=alpha/date=1970-01-01/pid=4242", "host=alpha/date=1970-01-01/pid=4242", "is a partition below date="),
]


@pytest.mark.parametrize("bad, shown, why", BAD, ids=[b[1].encode("unicode_escape").decode() for b in BAD])
def test_partitions_pmaps_does_not_write(ds, bad, shown, why):
    """A directory named as a partition pmaps never writes (a host with a space, a control
    character, a %-escape pyarrow would decode, or none; a date that is none; an unknown or
    repeated key; a partition below date=) holding a part file: one line naming it, escaped, exit
    6; before, it was read as another host (or silently skipped, or its name printed raw)."""
    d = ds / bad
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(parts(ds)[0], d / parts(ds)[0].name.replace("000000", "000007"))
    for argv in readers(ds):
        code, _, err, _ = pmaps(*argv)
        refused(code, err, 6, f"corrupt dataset: {shown} {why}")


def test_partition_checks_on_an_object_store(monkeypatch):
    """The same rules over an object store's listing (no links there): pyarrow's mock filesystem."""
    import pyarrow.fs as pafs

    from pmaps.errors import BadSnapshot
    from pmaps.store import dataset_checks

    fs = pafs._MockFileSystem()
    for key in ("root/host=a/" + DAY + "/part-1-2-3-000000.parquet", "root/_ranges/host=a/" + DAY +
                "/part-1-2-3-000000.parquet", "root/host=a/" + DAY + "/.part-1.pending", "root/README"):
        fs.create_dir(key.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(key) as f:
            f.write(b"x")
    monkeypatch.setattr(dataset_checks, "filesystem", lambda root: (fs, "root"))
    tree = dataset_checks.Tree("s3://bucket/root")
    assert tree.hosts() == ["a"] and [i.base_name for i in tree.parts()] == ["part-1-2-3-000000.parquet"]
    assert len(tree.parts("_ranges")) == len(tree.parts("", "a")) == 1
    fs.create_dir("root/host=a/" + DAY + "/pid=1", recursive=True)
    with pytest.raises(BadSnapshot, match="host=a/date=1970-01-01/pid=1 is a partition below date="):
        dataset_checks.Tree("s3://bucket/root").parts()
    fs.create_dir("root/host=a\nb", recursive=True)
    with pytest.raises(BadSnapshot, match=r"host=a\\x0ab is not a host partition"):
        dataset_checks.Tree("s3://bucket/root").hosts()


# -- more samples than diff and heatmap read -------------------------------------------------
def _many_samples(root: Path, n: int, pids: int = 1) -> None:
    """A part file of n one-VMA samples (distinct times; pids round-robin from 4242), holding the
    columns that find a host's samples: a few bytes a sample."""
    keep = ["time", "seq", "boot_id", "pid", "start_ticks", "comm", "vma_index", "ranges"]
    t = pq.read_table(parts(root)[0], columns=keep).slice(0, 1).take(pa.array(np.zeros(n, np.int64)))
    at = 1_000_000_000_000 + 10_000_000 + np.arange(n, dtype=np.int64)
    for name, col in (("time", pa.array(at).cast(pa.timestamp("us", tz="UTC"))),
                      ("seq", pa.array(np.arange(n, dtype=np.int64))),
                      ("pid", pa.array(4242 + np.arange(n, dtype=np.int64) % pids))):
        t = t.set_column(t.schema.get_field_index(name), name, col)
    pq.write_table(t, parts(root)[0].with_name("part-1-2-3-000099.parquet"), compression="zstd")


def test_samples_past_the_cap_are_a_usage_error(ds, run, monkeypatch):
    """More samples than diff and heatmap read (MAX_SAMPLES, lowered here) is a selection to
    narrow: exit 2, one line saying how, before any sample is made a Python object."""
    from pmaps.store import dataset_reader

    monkeypatch.setattr(dataset_reader, "MAX_SAMPLES", 100)
    _many_samples(ds, 150, pids=2)  # pids 4242 and 4243: 75 samples each, 77 of 4242 with the pair
    r = run("diff", str(ds))
    refused(r.code, r.err, 2, "host alpha has more than 100 samples", "choose one process with --pid")
    monkeypatch.setattr(dataset_reader, "MAX_SAMPLES", 50)
    r = run("diff", str(ds), "--pid", "4242")
    refused(r.code, r.err, 2, "pid 4242 on host alpha has more than 50 samples", "--start-ticks chooses one process")
    r = run("diff", str(ds), "--pid", "4242", "--start-ticks", "1234")
    refused(r.code, r.err, 2, "pid 4242 on host alpha has more than 50 samples", "pmaps query ROOT SQL")
    monkeypatch.setattr(dataset_reader, "MAX_SAMPLES", 80)
    r = run("diff", str(ds), "--pid", "4242", "--at", "0", "--at", "1")  # under the cap: reads (its pair)
    assert r.code == 0 and "became present" in r.out, r.err


def test_samples_past_the_cap_use_no_memory(ds):
    """At the real cap: a host of 2 M one-VMA samples (6 MB) is refused within 0.4 GB of a sound
    diff's peak, as the samples are grouped and counted in Arrow (was 1.5 GB more, and 19 s, all
    of them made Python objects, then a diff of two)."""
    from pmaps.store.dataset_reader import MAX_SAMPLES

    _, _, _, base = pmaps("diff", str(ds))
    _many_samples(ds, 4 * MAX_SAMPLES)
    code, _, err, peak = pmaps("diff", str(ds))
    refused(code, err, 2, f"host alpha has more than {MAX_SAMPLES} samples", "--pid")
    assert peak - base < 384 << 20, (base, peak)


# -- pmaps query: what the files decode to, what the result holds ------------------------------
def _one_group(f: Path, n: int, into: Path) -> None:
    """A part file `into` of n copies of the first row of `f` in one row group (the chunks share
    their buffers: the test builds it in 0.1 GB)."""
    chunk = pq.read_table(f).slice(0, 1).take(pa.array(np.zeros(min(n, 1 << 20), np.int64)))
    pq.write_table(pa.concat_tables([chunk] * (n // len(chunk))), into, compression="zstd", row_group_size=1 << 30)


def _sum(root: Path, table: str, column: str) -> int:
    return sum(pq.read_table(f).column(column).to_numpy().sum() for f in parts(root, table))


@needs_duckdb
@pytest.mark.parametrize("table", ["samples", "ranges"])
def test_query_reads_a_row_group_a_batch_at_a_time(ds, tmp_path, table):
    """The audit's copies of one row, as one row group of a file of under 1 MB: pyarrow's dataset
    scan decodes a row group whole (2 M VMA rows: +0.55 GB for `SELECT * ... LIMIT 5`; 16 M range
    rows: +0.5 GB for a sum and a max). pmaps query reads them SCAN_ROWS at a time: the same
    answers, within 0.2 GB of the same query of the two sound samples."""
    from pmaps.store.dataset import RANGES_DIR

    sound = tmp_path / "sound"
    put(sound)
    base = RANGES_DIR if table == "ranges" else ""
    n, column = (16 << 20, "count") if table == "ranges" else (2 << 20, "vma_size")
    bomb = parts(ds, base)[-1].with_name("part-0-0-0-000099.parquet")  # read first: LIMIT 5 needs it
    _one_group(parts(ds, base)[-1], n, bomb)
    assert bomb.stat().st_size < 1 << 20
    sql = {"samples": "SELECT * FROM samples LIMIT 5", "ranges": "SELECT sum(count), max(vma_start) FROM ranges"}[table]
    code, _, err, before = pmaps("query", str(sound), sql)
    assert code == 0, err
    code, out, err, peak = pmaps("query", str(ds), sql)
    assert code == 0 and not err, err
    assert peak - before < 200 << 20, (before, peak)
    rows = sum(pq.read_metadata(f).num_rows for f in parts(ds, base))
    code, out, err, _ = pmaps("query", str(ds), f"SELECT sum({column}), count(*) FROM {table}", "--format", "csv")
    assert code == 0 and out.splitlines()[1] == f"{_sum(ds, base, column)},{rows}", (out, err)


@needs_duckdb
def test_query_expands_long_text_a_piece_at_a_time(ds):
    """One path of 256 KB on each of 65,536 rows, a dictionary of one value (a few KB of file):
    expanded whole it is 16 GB, past the address space given; pmaps query expands SCAN_TEXT bytes
    of it at a time."""
    paths = sum(len(pq.read_table(f)) - pq.read_table(f).column("path").null_count for f in parts(ds))
    big = "/" + "x" * (256 << 10)
    n = 1 << 16
    t = pq.read_table(parts(ds)[0]).slice(0, 1).take(pa.array(np.zeros(n, np.int64)))
    path = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([big]))
    t = t.set_column(t.schema.get_field_index("path"), "path", path)
    f = parts(ds)[0].with_name("part-9-9-9-000098.parquet")
    pq.write_table(t, f, compression="zstd", store_schema=False)  # a string column, dictionary-encoded
    assert f.stat().st_size < 1 << 20
    code, out, err, _ = pmaps("query", str(ds), "SELECT count(*) AS n, max(length(path)) AS l FROM samples "
                              "WHERE path IS NOT NULL", "--format", "csv")
    assert code == 0 and out.splitlines()[1] == f"{n + paths},{len(big)}", (out, err)


@needs_duckdb
def test_query_result_past_the_cap(ds, run, monkeypatch):
    """A result of more values than pmaps query prints (MAX_CELLS, lowered here) is a usage error
    saying how to narrow it, once that many are fetched (DuckDB streams the rest unread)."""
    from pmaps.commands import query

    monkeypatch.setattr(query, "MAX_CELLS", 100)
    monkeypatch.setattr(query, "FETCH_ROWS", 2)
    r = run("query", str(ds), "SELECT * FROM samples")
    refused(r.code, r.err, 2, "the query returns more than 2 rows of 39 columns", "add a LIMIT")
    r = run("query", str(ds), "SELECT pid, vma_index FROM samples")  # 10 rows of 2: 20 values
    assert r.code == 0 and len(r.out.splitlines()) == 11, r.err


@needs_duckdb
def test_query_bounded_scan_keeps_pyarrows_answers(ds):
    """The batch-at-a-time scan filters and projects as pyarrow's own dataset scan does (DuckDB
    over both, in process): partition columns from the path, filters on columns not selected and
    on times, a column only some files have (NULL in the others), a join."""
    import duckdb
    import pyarrow.dataset as pads

    from pmaps.store.dataset import COLUMNS, arrow_tables

    f = parts(ds)[0]
    pq.write_table(pq.read_table(f).select([n for n, _ in COLUMNS[:-4]]), f)  # version 1: no dev ... ranges
    ours, _ = arrow_tables(str(ds))
    keys = pads.partitioning(pa.schema([("host", pa.string()), ("date", pa.date32())]), flavor="hive")
    theirs = {name: pads.dataset(str(ds / sub), format="parquet", partitioning=keys, schema=ours[name].schema)
              for name, sub in (("samples", ""), ("ranges", "_ranges"))}
    sqls = [
        "SELECT host, date, count(*) FROM samples GROUP BY host, date",
        "SELECT count(*) FROM samples WHERE pid = 4242 AND vma_index > 2",
        "SELECT count(*), count(inode), count(known), sum(rss) FROM samples",
        "SELECT count(*) FROM samples WHERE host = 'beta'",
        "SELECT comm, path, vma_start FROM samples WHERE path LIKE '/tmp%' ORDER BY ALL",
        "SELECT count(*) FROM samples WHERE time > TIMESTAMPTZ '1970-01-01 00:16:41+00'",
        "SELECT * FROM samples ORDER BY time, vma_index",
        "SELECT sum(count) FROM ranges WHERE date = DATE '1970-01-01' AND state > 0",
        "SELECT s.vma_index, sum(r.count) FROM ranges r JOIN samples s USING (host, boot_id, pid, start_ticks, time, "
        "vma_index) GROUP BY ALL ORDER BY ALL",
    ]
    got = {}
    for label, tables in (("ours", ours), ("theirs", theirs)):
        con = duckdb.connect(":memory:")
        for name, t in tables.items():
            con.register(name, t)
        got[label] = [con.execute(sql).fetchall() for sql in sqls]
        con.close()
    for sql, a, b in zip(sqls, got["ours"], got["theirs"]):
        assert a == b and a, (sql, a, b)
