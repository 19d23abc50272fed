"""A dataset on S3: `record --dataset s3://...` and `top --dataset s3://...` write to a local S3
endpoint (moto's server on a loopback port), `pmaps query`, `diff` and `heatmap` read it back,
through the two ways docs/dataset.md gives to point pmaps at an endpoint (URI parameters, and
AWS_ENDPOINT_URL_S3), and the objects are the files a local dataset holds."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest
from helpers import pmaps_cmd
from memchild import MemChild

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")
moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e '.[test]'")
pafs = pytest.importorskip("pyarrow.fs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(endpoint host:port, environment for pmaps): a moto S3 server with an empty bucket `bkt`.
    Dummy credentials, no AWS config files and no instance metadata: nothing reaches a real AWS."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    none = str(tmp_path_factory.mktemp("aws") / "none")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                           allow_bucket_creation=True)
    fs.create_dir("bkt")
    try:
        yield f"127.0.0.1:{port}", env, fs
    finally:
        srv.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def query(root: str, sql: str, env: dict) -> list[dict]:
    r = pmaps_cmd("query", root, sql, "--format", "json", "--bytes", env=env)
    return list(json.loads(r.stdout)["rows"])


def test_record_to_s3_and_read_back(s3, tmp_path):
    endpoint, env, fs = s3
    uri = f"s3://bkt/fleet?endpoint_override={endpoint}&scheme=http"
    with MemChild(["a:anon:1M", "f:file:256K"]) as mc:
        r = pmaps_cmd("record", str(mc.pid), "--dataset", uri, "--count", "2", "--interval", "0.1", env=env)
        assert "recorded 2 samples" in r.stderr, r.stderr
        r = pmaps_cmd("top", "--dataset", uri, "-p", str(mc.pid), "-q", env=env)
        regions = mc.regions
    # Objects only (no directory markers), named as a local dataset names its files.
    keys = sorted(i.path for i in fs.get_file_info(pafs.FileSelector("bkt", recursive=True))
                  if i.type == pafs.FileType.File)
    assert len(keys) == 6 and all(k.split("/")[-1].startswith("part-") for k in keys), keys
    assert sum("/_ranges/host=" in k for k in keys) == 3
    # pmaps query through the URI's parameters, and through AWS_ENDPOINT_URL_S3 on a plain URL.
    sql = ("SELECT seq, count(*) AS vmas, max(ranges) AS ranges, sum(rss) AS rss, (SELECT count(*) FROM ranges r "
           f"WHERE r.time = s.time) AS range_rows FROM samples s WHERE pid = {mc.pid} GROUP BY time, seq ORDER BY time")
    rows = query(uri, sql, env)
    assert len(rows) == 3 and all(r["ranges"] == r["range_rows"] > 0 for r in rows), rows
    assert rows == query("s3://bkt/fleet", sql, {**env, "AWS_ENDPOINT_URL_S3": f"http://{endpoint}"})
    a = f"{regions['a']['start']:x}"
    got = query(uri, f"SELECT rss FROM samples WHERE pid = {mc.pid} AND vma_start = '{a}'", env)
    assert [g["rss"] for g in got] == [1 << 20] * 3
    # The same bytes as a local dataset: copied down, the local one answers alike.
    local = tmp_path / "copy"
    pafs.copy_files("bkt/fleet", str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    assert query(str(local), sql, env) == rows
    # diff and heatmap read the samples from S3 (the first two: record's; the last: top's).
    r = pmaps_cmd("diff", uri, "--pid", str(mc.pid), "--at", "0", "--at", "1", env=env)
    assert r.stdout.startswith("# A: s3://bkt/fleet") and "# B: s3://bkt/fleet" in r.stdout, r.stdout[:500]
    for at in ("1", "-1"):  # the child's own regions did not change (a library's flags may have)
        r = pmaps_cmd("diff", uri, "--pid", str(mc.pid), "--at", "0", "--at", at, "--format", "json", env=env)
        assert not [v for v in json.loads(r.stdout)["vmas"] if v["start"] in (regions["a"]["start"],
                                                                              regions["f"]["start"])]
    pytest.importorskip("matplotlib")
    r = pmaps_cmd("heatmap", uri, "--pid", str(mc.pid), "-o", str(tmp_path / "h.png"), env=env)
    assert "3 samples" in r.stderr and Path(tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG", r.stderr


def test_s3_errors_are_one_line(s3):
    endpoint, env, _ = s3
    me = str(os.getpid())
    cases = [
        (("query", f"s3://nobkt/x?endpoint_override={endpoint}&scheme=http", "SELECT 1"), 1, "no dataset files"),
        (("record", me, "--dataset", f"s3://nobkt/x?endpoint_override={endpoint}&scheme=http", "--count", "1"), 1,
         "cannot write s3://nobkt/x"),
        (("query", "s3://bkt/x?no_such_option=1", "SELECT 1"), 1, "cannot open dataset"),
    ]
    for argv, code, msg in cases:
        r = pmaps_cmd(*argv, env=env, check=False)
        assert r.returncode == code and r.stderr.count("\n") == 1 and msg in r.stderr, (argv, r.stderr)


@pytest.mark.parametrize("root", ["s3://AKIAEXAMPLE:s3cr3tV4lue@bkt/fleet", "s3://bkt/fleet?secret_key=s3cr3tV4lue",
                                  "gs://bkt/fleet?access_key=s3cr3tV4lue&secret_key=s3cr3tV4lue"])
@pytest.mark.parametrize("cmd", ["query", "record", "diff"])
def test_credentials_in_root_are_refused_unechoed(root, cmd):
    """A secret in ROOT would be printed in messages and headers: refused, without repeating it."""
    argv = {"query": ("query", root, "SELECT 1"), "record": ("record", str(os.getpid()), "--dataset", root),
            "diff": ("diff", root)}[cmd]
    r = pmaps_cmd(*argv, check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "credentials" in r.stderr, r.stderr
    assert "s3cr3t" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_schema_evolution_on_s3(s3):
    """On S3 as locally (docs/dataset.md, schema evolution): an object rewritten as a newer pmaps
    would write it (an added column, version 3) shows that column in `pmaps query`, NULL in the
    older objects; diff still reads both; an added column of another type in another object is
    one line naming the column and an object."""
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    endpoint, env, fs = s3
    uri = f"s3://bkt/evolve?endpoint_override={endpoint}&scheme=http"
    with MemChild(["a:anon:1M"]) as mc:
        pmaps_cmd("record", str(mc.pid), "--dataset", uri, "--count", "2", "--interval", "0.1", "-q", env=env)
    keys = sorted((i.path for i in fs.get_file_info(pafs.FileSelector("bkt/evolve", recursive=True))
                   if i.type == pafs.FileType.File and "/_ranges/" not in i.path), key=lambda k: k.split("/")[-1])
    assert len(keys) == 2, keys

    def rewrite(key: str, **cols: object) -> None:
        t = pq.read_table(key, filesystem=fs)
        for name, col in cols.items():
            t = t.drop_columns([name]) if name in t.schema.names else t
            t = t.append_column(name, col)
        pq.write_table(t, key, filesystem=fs)

    n = pq.read_metadata(keys[1], filesystem=fs).num_rows
    rewrite(keys[1], version=pa.array([3] * n, pa.int32()), numa_node=pa.array([1] * n, pa.int64()))
    rows = query(uri, "SELECT seq, version, count(*) AS n, count(numa_node) AS numa, sum(numa_node) AS s "
                 "FROM samples GROUP BY seq, version ORDER BY seq", env)
    assert [(r["seq"], r["version"], r["numa"], r["s"]) for r in rows] == [(0, 2, 0, None), (1, 3, n, n)]
    r = pmaps_cmd("diff", uri, "--pid", str(mc.pid), env=env)
    assert "# B: s3://bkt/evolve" in r.stdout, r.stdout[:300]
    m = pq.read_metadata(keys[0], filesystem=fs).num_rows
    rewrite(keys[0], numa_node=pa.array(["one"] * m))
    r = pmaps_cmd("query", uri, "SELECT count(*) FROM samples", env=env, check=False)
    assert r.returncode == 6 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "column 'numa_node' is " in r.stderr and keys[0].split("/")[-1] in r.stderr, r.stderr


def test_s3_write_is_both_objects_or_neither(s3):
    """The samples object failing after its ranges object was published takes the ranges object
    back: a query never finds ranges of a sample the table lacks."""
    from pmaps.errors import PmapsError
    from pmaps.store.dataset import COLUMNS, RANGE_COLUMNS
    from pmaps.store.dataset_writer import DatasetWriter

    endpoint, _, fs = s3

    class SecondFails:
        """The writer's filesystem, its second object refused as a full or offline store would."""

        def __init__(self, real: object) -> None:
            self.real, self.opened = real, 0

        def open_output_stream(self, path: str) -> object:
            self.opened += 1
            if self.opened == 2:
                raise OSError("injected: the store refused the object")
            return self.real.open_output_stream(path)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    fill = {"int32": 0, "int64": 0, "string": "x", "timestamp": 1.0e9}
    w = DatasetWriter(f"s3://bkt/pair?endpoint_override={endpoint}&scheme=http", "h")
    w.fs = SecondFails(w.fs)
    with pytest.raises(PmapsError, match="injected"):
        w.write({c: [fill[t]] for c, t in COLUMNS}, 1.0e9, 42, 0, {c: [fill[t]] for c, t in RANGE_COLUMNS})
    assert w.fs.opened == 2
    assert [i.path for i in fs.get_file_info(pafs.FileSelector("bkt/pair", recursive=True, allow_not_found=True))
            if i.type == pafs.FileType.File] == []


@pytest.mark.parametrize("argv", [("record", "{pid}", "--dataset", "s3://", "--count", "1"),
                                  ("top", "--dataset", "s3://?endpoint_override={endpoint}", "-p", "{pid}"),
                                  ("query", "gs://", "SELECT 1"), ("heatmap", "s3://", "-o", "h.png")])
def test_url_without_a_bucket_is_a_usage_error(s3, argv):
    """s3:// (no bucket) is no place to read or write: one line, exit 2, before any scan (pyarrow
    would list every bucket, or raise ArrowInvalid on the path '/')."""
    endpoint, env, _ = s3
    r = pmaps_cmd(*(a.format(pid=os.getpid(), endpoint=endpoint) for a in argv), env=env, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "names no bucket" in r.stderr, r.stderr
