"""Fleet datasets: record --dataset writes Hive-partitioned Parquet that DuckDB (pmaps query) and
Spark read as one table with the same rows; identity columns match the kernel's own files."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, mapping_file_named, pmaps_cmd
from memchild import MemChild

from pmaps.kernel.identity import decode_build_id, decode_start_ticks

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("duckdb")
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A dataset of two processes: a memchild (2 samples, one file each) and one more (3 samples, --batch 2)."""
    root = tmp_path_factory.mktemp("ds") / "fleet"
    with MemChild(["a:anon:1M", "t:thp:4M", "f:file:256K"]) as mc, MemChild(["b:anon:2M"]) as mc2:
        pmaps_cmd("record", str(mc.pid), "--dataset", str(root), "--count", "2", "--interval", "0.1", "-q")
        pmaps_cmd("record", str(mc2.pid), "--dataset", str(root), "--count", "3", "--interval", "0.1", "--batch", "2",
                  "-q")
        smaps = {p: _smaps_rss(p) for p in (mc.pid, mc2.pid)}
        stat_ = {p: Path(f"/proc/{p}/stat").read_bytes() for p in (mc.pid, mc2.pid)}
        yield root, mc.pid, mc2.pid, smaps, stat_, mc.regions


def _smaps_rss(pid: int) -> dict[str, int]:
    from pmaps.kernel.smaps import decode_smaps

    maps = [ln.split()[0].split("-")[0] for ln in Path(f"/proc/{pid}/maps").read_text().splitlines()]
    rows = decode_smaps(Path(f"/proc/{pid}/smaps").read_bytes())
    return {start.lstrip("0") or "0": r["Rss"] for start, r in zip(maps, rows)}


def query(root: Path, sql: str, *extra: str) -> list[dict]:
    r = pmaps_cmd("query", str(root), sql, "--format", "json", *extra)
    return list(json.loads(r.stdout)["rows"])


def test_layout_modes_and_types(fleet):
    root, pid, pid2, *_ = fleet
    hosts = sorted(p.name for p in root.iterdir())
    assert len(hosts) == 2 and hosts[0] == "_ranges" and re.fullmatch(r"host=[A-Za-z0-9._-]+", hosts[1])
    files = sorted(root.rglob("*"))
    every = [f for f in files if f.is_file()]
    assert all(re.fullmatch(r"part-\d+-\d+-\d+-\d{6}\.parquet", f.name) for f in every), every
    parts = [f for f in every if f.parts[len(root.parts)] != "_ranges"]
    # Each samples file has its ranges file, of the same name, under _ranges/ (readers skip '_').
    assert sorted(f.relative_to(root / "_ranges") for f in every if f not in parts) == \
        sorted(f.relative_to(root) for f in parts)
    assert len(parts) == 2 + 2  # memchild: a file per sample; the other: --batch 2 of 3 samples
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in parts)
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in [root, *files] if d.is_dir())
    date = parts[0].parent.name
    assert re.fullmatch(r"date=\d{4}-\d\d-\d\d", date)
    schema = pq.read_schema(parts[0])
    assert "host" not in schema.names and "date" not in schema.names  # partition keys only in paths
    for f in schema:
        assert not pa.types.is_unsigned_integer(f.type), f  # Spark widens uint64 to decimal(20,0)
        if pa.types.is_timestamp(f.type):
            assert f.type.unit == "us" and f.type.tz == "UTC", f  # Spark refuses nanoseconds
    batched = [f for f in parts if f"-{pid2}-" in f.name]
    assert sorted(len(set(pq.read_table(f).column("seq").to_pylist())) for f in batched) == [1, 2]


def test_identity_and_figures_match_the_kernel(fleet):
    root, pid, pid2, smaps, stat_, regions = fleet
    rows = query(root, f"SELECT * FROM samples WHERE pid = {pid} AND seq = 1 ORDER BY vma_index", "--bytes")
    assert rows and {r["version"] for r in rows} == {2}
    r0 = rows[0]
    assert r0["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert r0["kernel"] == os.uname().release and r0["host"] == re.sub(r"[^A-Za-z0-9._-]", "_", os.uname().nodename)
    assert r0["start_ticks"] == decode_start_ticks(stat_[pid])
    assert r0["exe"] == os.path.realpath(sys.executable)
    assert r0["comm"] == stat_[pid].split(b"(")[1].split(b")")[0].decode()
    # The memchild's own regions: RSS per VMA equals smaps (these pages do not move).
    by_start = {r["vma_start"]: r for r in rows}
    for name in ("a", "t", "f"):
        start = f"{regions[name]['start']:x}"
        assert by_start[start]["rss"] == smaps[pid][start], name
    t = by_start[f"{regions['t']['start']:x}"]
    assert t["thp"] in (0, 4 << 20) and t["uss"] == 4 << 20
    assert t["anon_thp"] == t["thp"]  # PMD-mapped THP: AnonHugePages from the samples' PMD state bit
    # Build-ids agree with readelf where the kernel's file has one.
    exe = [r for r in rows if r["path"] == r0["exe"]][0]
    if shutil.which("readelf"):
        out = subprocess.run(["readelf", "-n", r0["exe"]], capture_output=True, text=True).stdout
        m = re.search(r"Build ID: ([0-9a-f]+)", out)
        assert exe["build_id"] == (m.group(1) if m else None)
    assert all(r["build_id"] is None for r in rows if not (r["path"] or "").startswith("/"))


def test_query_formats_and_errors(fleet, tmp_path):
    root = fleet[0]
    r = pmaps_cmd("query", str(root), "SELECT pid, count(*) AS n, sum(rss) AS rss FROM samples GROUP BY pid ORDER BY pid")
    assert r.stdout.splitlines()[0].split() == ["PID", "N", "RSS"]
    csv = pmaps_cmd("query", str(root), "SELECT DISTINCT pid FROM samples ORDER BY pid", "--format", "csv").stdout
    assert csv.splitlines() == ["pid", *sorted(str(p) for p in fleet[1:3])]
    for argv, code, msg in [((str(root), "SELEC"), 2, "query failed"),
                            ((str(tmp_path), "SELECT 1 FROM samples"), 1, "no dataset files"),
                            ((str(root), "SELECT * FROM nope"), 2, "nope")]:
        r = pmaps_cmd("query", *argv, check=False)
        assert r.returncode == code and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    r = pmaps_cmd("record", "1", check=False)
    assert r.returncode == 2 and "--dataset" in r.stderr


def test_readme_queries_run(fleet):
    """Each `pmaps query fleet "..."` of the README runs here and prints the README's header."""
    blocks = re.findall(r"\$ pmaps query fleet (\".*\")\n(.*)\n", README)
    assert len(blocks) == 3
    for sql, header in blocks:
        r = pmaps_cmd("query", str(fleet[0]), shlex.split(sql)[0])
        assert r.stdout.splitlines()[0].split() == header.split()


def _spark_block() -> str:
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "SparkSession" in b)
    return block


def test_spark_and_duckdb_return_the_same_rows(fleet):
    """The README's PySpark lines, run as they are (ROOT pointed at the test dataset) in local mode."""
    if not shutil.which("java"):
        pytest.skip("no Java runtime: tests/setup-system.sh installs default-jre-headless")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pytest.skip("pyspark is not installed (pip install -e '.[test]')")
    code = _spark_block().replace('ROOT = "fleet"', f"ROOT = {str(fleet[0])!r}")
    assert code != _spark_block()
    # In a child Python, not exec'd here: py4j's gateway threads outlive spark.stop() and would
    # take signals meant for later tests (test_top's Ctrl-C timer) in this process.
    code += "\nimport json, sys\njson.dump({'rows': [list(r) for r in rows], 'sql': SQL}, sys.stdout, default=str)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env = json.loads(r.stdout.strip().splitlines()[-1])
    spark_rows = [tuple(r) for r in env["rows"]]
    duck = query(fleet[0], env["sql"], "--bytes")
    duck_rows = [tuple(r.values()) for r in duck]
    assert spark_rows and len(spark_rows) == len(duck_rows)
    for a, b in zip(spark_rows, duck_rows):
        assert a[0] == b[0] and float(a[1]) == pytest.approx(float(b[1])) and int(a[2]) == int(b[2]), (a, b)


def _elf(notes: bytes, big: bool = False) -> bytes:
    """A minimal ELF64 image: header, one PT_NOTE program header, the notes."""
    e = ">" if big else "<"
    phoff, notes_at = 64, 64 + 56
    hdr = b"\x7fELF" + bytes([2, 2 if big else 1, 1]) + bytes(9)
    hdr += struct.pack(e + "HHIQQQIHHHHHH", 3, 62, 1, 0, phoff, 0, 0, 64, 56, 1, 64, 0, 0)
    ph = struct.pack(e + "IIQQQQQQ", 4, 4, notes_at, 0, 0, len(notes), len(notes), 4)
    return hdr + ph + notes


def _note(name: bytes, ntype: int, desc: bytes, big: bool = False) -> bytes:
    e = ">" if big else "<"
    pad = lambda b: b + bytes(-len(b) % 4)
    return struct.pack(e + "III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_decode_build_id_on_bytes():
    bid = bytes(range(20))
    other = _note(b"Go\0", 4, b"xyz")
    assert decode_build_id(_elf(other + _note(b"GNU\0", 3, bid))) == bid.hex()
    assert decode_build_id(_elf(_note(b"GNU\0", 3, bid, True), big=True)) == bid.hex()
    assert decode_build_id(_elf(other)) is None
    assert decode_build_id(b"#!/bin/sh\n" + bytes(100)) is None
    assert decode_build_id(_elf(_note(b"GNU\0", 3, bid))[:100]) is None  # truncated: no crash
    # A note whose sizes point past the end: none found, no exception.
    assert decode_build_id(_elf(struct.pack("<III", 4, 1 << 30, 3) + b"GNU\0")) is None


def test_decode_start_ticks():
    line = b"42 (a) b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10 " + b"0 " * 30
    assert decode_start_ticks(line) == 98765


def test_top_dataset_every_process(tmp_path):
    """top --dataset: one file per scan (and its ranges file), one row per VMA of every scanned
    process, RSS as smaps says."""
    root = tmp_path / "fleet"
    with MemChild(["a:anon:1M"]) as m1, MemChild(["b:anon:2M", "z:zero:1M"]) as m2:
        r = pmaps_cmd("top", "--dataset", str(root), "-p", f"{m1.pid},{m2.pid}", "--interval", "0.1",
                      "--iterations", "2")
        assert r.stderr.count("2 processes") == 2, r.stderr
        smaps = {p: _smaps_rss(p) for p in (m1.pid, m2.pid)}
        regions = {m1.pid: m1.regions, m2.pid: m2.regions}
    assert len(list(root.glob("host=*/date=*/part-*.parquet"))) == len(list(root.glob("_ranges/*/*/part-*"))) == 2
    rows = query(root, "SELECT pid, seq, vma_start, rss, zero_page FROM samples ORDER BY pid, seq, vma_index")
    assert {(r["pid"], r["seq"]) for r in rows} == {(p, s) for p in smaps for s in (0, 1)}
    got = {(r["pid"], r["vma_start"]): r for r in rows if r["seq"] == 1}
    for pid, regs in regions.items():
        for name, reg in regs.items():
            start = f"{reg['start']:x}"
            assert got[(pid, start)]["rss"] == smaps[pid][start], name
    assert got[(m2.pid, f"{m2.regions['z']['start']:x}")]["zero_page"] == 1 << 20


def test_path_bytes_not_utf8(tmp_path):
    """A mapped file whose name is not UTF-8 (Parquet strings are): stored with each such byte as
    the text \\xNN, by record and top alike; a dataset diff reads it back."""
    root = tmp_path / "ds"
    with mapping_file_named(os.fsencode(tmp_path) + b"/raw\x9bx\xff.bin") as pid:
        pmaps_cmd("record", str(pid), "--dataset", str(root), "--count", "2", "--interval", "0.05", "-q")
        pmaps_cmd("top", "-p", str(pid), "--dataset", str(root), "-q")
    want = os.fsdecode(tmp_path) + "/raw\\x9bx\\xff.bin"
    rows = query(root, "SELECT DISTINCT path FROM samples WHERE path LIKE '%raw%'")
    assert [r["path"] for r in rows] == [want]
    assert pmaps_cmd("diff", str(root), "--pid", str(pid)).returncode == 0


def test_ranges_of_the_known_layout(fleet, run, tmp_path):
    """record --dataset wrote the child's page ranges: its regions' present pages, page-exact; diff
    and heatmap read them back (the child did not change between its two samples)."""
    root, pid, pid2, *_, regions = fleet
    rows = query(root, "SELECT vma_start, sum(count) AS pages, min(page) AS first FROM ranges "
                 f"WHERE pid = {pid} AND seq = 1 AND (state & 4294967296) <> 0 GROUP BY vma_start")
    got = {r["vma_start"]: (r["pages"], r["first"]) for r in rows}
    for name in ("a", "t", "f"):
        assert got[f"{regions[name]['start']:x}"] == (regions[name]["pages"], 0), name
    rss = query(root, f"SELECT vma_start, rss FROM samples WHERE pid = {pid} AND seq = 1", "--bytes")
    mine = {f"{regions[n]['start']:x}" for n in ("a", "t", "f")}
    assert {r["vma_start"]: r["rss"] for r in rss if r["vma_start"] in mine} == \
        {k: v[0] * 4096 for k, v in got.items() if k in mine}
    r = run("diff", str(root), "--pid", str(pid), "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert not [v for v in doc["vmas"] if v["start"] in {regions[n]["start"] for n in ("a", "t", "f")}]
    r = run("diff", str(root), "--pid", str(pid2), "--at", "0", "--at", "2")  # across a --batch file
    assert r.code == 0 and "# B: " in r.out, r.err
    pytest.importorskip("matplotlib")
    r = run("heatmap", str(root), "--pid", str(pid2), "-o", str(tmp_path / "h.png"))
    assert r.code == 0 and "3 samples" in r.err, r.err
    r = run("heatmap", str(root), "-o", str(tmp_path / "h2.png"))
    assert r.code == 2 and r.err.count("\n") == 1 and "2 processes on host" in r.err and "--pid" in r.err, r.err


# -- bad input: one line, a usage error, nothing written ------------------------------------
def one_line(r: subprocess.CompletedProcess[str], code: int) -> None:
    assert r.returncode == code and r.stderr.count("\n") == 1 and r.stderr.startswith("pmaps"), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("sql", ["", " ", ";", "-- x", "/* nothing */"])
def test_query_empty_sql_is_a_usage_error(fleet, sql):
    r = pmaps_cmd("query", str(fleet[0]), sql, check=False)
    one_line(r, 2)
    assert "empty" in r.stderr and not r.stdout


def test_query_text_in_a_size_column(fleet):
    """A column named as a size column but holding text (or booleans, lists) prints as it is."""
    sql = "SELECT 'abc' AS rss, true AS pss, [1, 2] AS swap, 2048 AS uss, NULL AS dirty, 1.5 AS x_bytes"
    r = pmaps_cmd("query", str(fleet[0]), sql)
    head, row = r.stdout.splitlines()
    assert head.split() == ["RSS", "PSS", "SWAP", "USS", "DIRTY", "X_BYTES"] and row.split()[:4] == \
        ["abc", "True", "[1,", "2]"] and row.split()[4:] == ["2.0K", "?", "1.5"], r.stdout
    assert query(fleet[0], sql) == [{"rss": "abc", "pss": True, "swap": [1, 2], "uss": 2048, "dirty": None,
                                     "x_bytes": 1.5}]


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_query_nan_and_infinity_are_null(fleet, fmt):
    """JSON has no NaN nor Infinity: a reader refuses them (parse_constant below is a strict one)."""
    sql = "SELECT 'nan'::DOUBLE AS rss, 'inf'::DOUBLE AS x, ['-inf'::DOUBLE, 1.5] AS l, {'a': 'nan'::DOUBLE} AS s"
    r = pmaps_cmd("query", str(fleet[0]), sql, "--format", fmt)

    def strict(name: str) -> None:
        raise AssertionError(f"{name} in pmaps' JSON: {r.stdout}")

    doc = json.loads(r.stdout.splitlines()[0], parse_constant=strict)
    row = doc["rows"][0] if fmt == "json" else {k: v for k, v in doc.items() if k != "schema"}
    assert row == {"rss": None, "x": None, "l": [None, 1.5], "s": {"a": None}}


NOWHERE = [("s3://", "s3:// names no bucket"), ("gs://", "gs:// names no bucket"), ("s3:///fleet", "no bucket"),
           ("s3://?region=us-east-1", "no bucket"), ("file://", "file:// names no directory"), ("", "")]


# diff takes '' and file:// for a recording's path (store.dataset.is_dataset): not a dataset ROOT.
@pytest.mark.parametrize("cmd,root,msg", [(c, r, m) for c in ("record", "top", "query", "diff") for r, m in NOWHERE
                                          if not (c == "diff" and r in ("", "file://"))])
def test_dataset_root_that_names_no_place(cmd, root, msg):
    """A ROOT without a bucket, or an empty path (file://: the filesystem's root for the writer, the
    working directory for the readers), is a usage error before any scan. As nobody: a run that
    went on would fail to write to / rather than fill it."""
    pid = str(os.getpid())
    argv = {"record": ("record", pid, "--dataset", root, "--count", "1"), "top": ("top", "--dataset", root, "-p", pid),
            "query": ("query", root, "SELECT 1"), "diff": ("diff", root)}[cmd]
    r = pmaps_cmd(*argv, user=True, check=False, env={"AWS_EC2_METADATA_DISABLED": "true"})
    one_line(r, 2)
    assert msg in r.stderr, r.stderr


def test_record_output_and_dataset_are_exclusive(tmp_path):
    """record writes -o DIR *or* --dataset ROOT ("instead"): both given, the second was ignored."""
    r = pmaps_cmd("record", str(os.getpid()), "-o", str(tmp_path / "rec"), "--dataset", str(tmp_path / "ds"),
                  "--count", "1", check=False)
    one_line(r, 2)
    assert "not allowed with" in r.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize("links", ["apart", "same", "date", "ranges"])
def test_record_refuses_symlinked_partitions(tmp_path, links):
    """A link below ROOT (host=, date=, _ranges) is refused, one line and exit 1, before anything
    is written: record wrote root-owned files wherever the links pointed (and, both links to one
    directory, failed with a misleading 'File exists'). ROOT itself may be a link."""
    import datetime as dt

    from pmaps.store.dataset import partition_value

    host = f"host={partition_value(os.uname().nodename)}"
    root, out = tmp_path / "fleet", tmp_path / "out"
    (root / "_ranges").mkdir(parents=True)
    targets = [out / "a", out / "b"]
    for t in targets:
        t.mkdir(parents=True)
    if links == "apart":
        (root / host).symlink_to(targets[0])
        (root / "_ranges" / host).symlink_to(targets[1])
    elif links == "same":
        (root / host).symlink_to(targets[0])
        (root / "_ranges" / host).symlink_to(targets[0])
    elif links == "date":  # today's and tomorrow's (UTC): the run may cross midnight
        (root / host).mkdir()
        today = dt.datetime.now(dt.UTC).date()
        for d in (today, today + dt.timedelta(days=1)):
            (root / host / f"date={d}").symlink_to(targets[0])
    else:
        (root / "_ranges").rmdir()
        (root / "_ranges").symlink_to(targets[1])
    before = sorted(root.rglob("*"))
    with MemChild(["a:anon:64K"]) as mc:
        r = pmaps_cmd("record", str(mc.pid), "--dataset", str(root), "--count", "1", "-q", check=False)
    one_line(r, 1)
    assert "is a symbolic link, not a directory" in r.stderr and "File exists" not in r.stderr, r.stderr
    assert not [f for f in out.rglob("*") if f not in targets], "written through a link"
    assert sorted(root.rglob("*")) == before, "a directory or file made below ROOT"


def test_record_into_a_linked_root(tmp_path):
    """ROOT itself may be a symlink (the user's choice): the dataset is written where it points."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    with MemChild(["a:anon:64K"]) as mc:
        pmaps_cmd("record", str(mc.pid), "--dataset", str(link), "--count", "1", "-q")
    samples, ranges, temps = _published(real)
    assert len(samples) == 1 and samples == ranges and not temps
    assert all(d.stat().st_mode & 0o777 == 0o700 for d in real.rglob("*") if d.is_dir())


# -- a write's two files: both or neither -----------------------------------------------------
def _cols(n: int = 1) -> tuple[dict, dict]:
    """A samples row and a ranges row of one write (every column, dummy values)."""
    from pmaps.store.dataset import COLUMNS, RANGE_COLUMNS

    def fill(cols: tuple) -> dict:
        v = {"int32": 0, "int64": 0, "string": "x", "timestamp": 1.0e9}
        return {c: [v[t]] * n for c, t in cols}

    return fill(COLUMNS), fill(RANGE_COLUMNS)


def _published(root: Path) -> tuple[list, list, list]:
    files = [f.relative_to(root) for f in root.rglob("*") if f.is_file()]
    ranges = sorted(f.relative_to("_ranges") for f in files if f.parts[0] == "_ranges" and not f.name.startswith("."))
    samples = sorted(f for f in files if f.parts[0] != "_ranges" and not f.name.startswith("."))
    return samples, ranges, [f for f in files if f.name.startswith(".")]


def test_write_fails_between_the_files(tmp_path, monkeypatch):
    """An interruption (or an error) once the ranges file is written and before the samples file
    is: neither is published, no temp file stays."""
    import pmaps.store.dataset_writer as ds

    calls = []
    real = ds.stage

    def second_interrupted(dir_fd: int, tmp: str, data: bytes) -> None:
        calls.append(tmp)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(dir_fd, tmp, data)

    monkeypatch.setattr(ds, "stage", second_interrupted)
    cols, ranges = _cols()
    with pytest.raises(KeyboardInterrupt):
        ds.DatasetWriter(str(tmp_path / "ds"), "h").write(cols, 1.0e9, 42, 0, ranges)
    assert len(calls) == 2 and _published(tmp_path / "ds") == ([], [], [])


def test_signal_during_publication_waits_for_both(tmp_path, monkeypatch):
    """SIGINT arriving as the first file is published acts once both are (KeyboardInterrupt then),
    and not before: a query never finds ranges of a sample the table lacks."""
    import pmaps.store.dataset_writer as ds

    real_link = os.link
    sent = []

    def link(src: str, dst: str, *a: object, **k: object) -> None:
        real_link(src, dst, *a, **k)  # type: ignore[arg-type]
        if os.path.basename(dst).startswith("part-") and not sent:
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGINT)  # Python raises it at the next bytecode, unless held

    monkeypatch.setattr(ds.os, "link", link)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cols, ranges = _cols()
        with pytest.raises(KeyboardInterrupt):
            ds.DatasetWriter(str(tmp_path / "ds"), "h").write(cols, 1.0e9, 42, 0, ranges)
    finally:
        signal.signal(signal.SIGINT, old)
    samples, ranges_, temps = _published(tmp_path / "ds")
    assert sent and len(samples) == 1 and samples == ranges_ and not temps


def _interrupt_after_first_write(argv: list[str], root: Path, sig: int, wait_for) -> subprocess.CompletedProcess[str]:
    """Run pmaps until its first part file is published, then send `sig`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    p = subprocess.Popen([sys.executable, "-m", "pmaps", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        wait_for(lambda: list(root.glob("host=*/date=*/part-*.parquet")), "the first part file")
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_top_dataset_interrupted_exits_130(tmp_path, sig, wait_for):
    """top --dataset --interval S ends on a signal as an interrupted command does (exit 130, one
    line), every scan it wrote with its ranges file, no temp file."""
    root = tmp_path / "fleet"
    with MemChild(["a:anon:1M"]) as mc:
        r = _interrupt_after_first_write(["top", "--dataset", str(root), "-p", str(mc.pid), "--interval", "0.05",
                                          "-q"], root, sig, wait_for)
    one_line(r, 130)
    assert "interrupted" in r.stderr
    samples, ranges, temps = _published(root)
    assert samples and samples == ranges and not temps


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_record_dataset_interrupted_keeps_pairs(tmp_path, sig, wait_for):
    """record --dataset takes the same write path: stopped by a signal (exit 0, its note), every
    sample has its ranges file, each written once."""
    root = tmp_path / "fleet"
    with MemChild(["a:anon:1M"]) as mc:
        r = _interrupt_after_first_write(["record", str(mc.pid), "--dataset", str(root), "--interval", "0.01", "-q"],
                                         root, sig, wait_for)
    assert r.returncode == 0 and "interrupted (stopped by SIG" in r.stderr, r.stderr
    samples, ranges, temps = _published(root)
    n = int(re.search(r"recorded (\d+) samples", r.stderr).group(1))  # type: ignore[union-attr]
    assert len(samples) == n and samples == ranges and not temps
