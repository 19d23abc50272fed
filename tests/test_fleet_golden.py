"""Goldens and round-trips for the fleet formats: the exporter's exposition text from the golden
system scan (and promtool's lint of it), a `pmaps query` table over a dataset built from fixed rows,
and the dataset file round-trip."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from test_golden import GOLDEN, check

from pmaps.analysis.dataset import Identity, sample_rows
from pmaps.analysis.exporter import export
from pmaps.render.metrics import families
from pmaps.store import scan as scanstore
from pmaps.store.recording import load_sample

pytest.importorskip("prometheus_client")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def exposition(by: str, top: int) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    fams = families(export(scanstore.load(GOLDEN / "sysscan.npz"), by, top), {"scan_interval": 30.0},
                    {"exited": 1}, 0, 1)

    class C:
        def collect(self):
            for f in fams:
                m = (GaugeMetricFamily if f.kind == "gauge" else CounterMetricFamily)(f.name, f.help, labels=f.labels)
                for lab, v in f.samples:
                    m.add_metric(list(lab), v)
                yield m

    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())  # type: ignore[arg-type]
    return generate_latest(reg).decode()


def test_exposition_golden():
    text = exposition("program", 3)
    check("exporter_program_top3.prom", text)
    # The golden scan has more than 3 programs: the rest is `other`, and nothing else.
    lines = [ln for ln in text.splitlines() if ln.startswith("pmaps_pss_bytes{")]
    assert len(lines) == 4 and 'program="other"' in lines[-1]
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_other_sums_the_rest():
    """top 1 + other add up to the same totals as top 100 (each mm once either way)."""
    few, many = export(scanstore.load(GOLDEN / "sysscan.npz"), "program", 1), \
        export(scanstore.load(GOLDEN / "sysscan.npz"), "program", 100)
    assert [g.name for g in few.groups][-1] == "other" and len(few.groups) == 2
    for k in ("rss", "uss", "swap", "anon", "file"):
        assert sum(g.fig[k] or 0 for g in few.groups) == sum(g.fig[k] or 0 for g in many.groups), k
    assert sum(g.procs for g in few.groups) == sum(g.procs for g in many.groups)


def _fixed_dataset(root) -> None:
    from pmaps.store.dataset_writer import DatasetWriter

    s = load_sample(GOLDEN / "time_a.parquet")
    for host, t in (("alpha", 1796000000.0), ("beta", 1796086400.0)):
        s.time = t
        ident = Identity(host, "boot-1", "6.18.0", s.pid, 1234, 1795999000.0, s.comm, "/usr/bin/memchild", "/",
                         0)
        DatasetWriter(str(root), host).write(sample_rows(s, ident, {}), t, s.pid, 0)


def test_query_golden(run, tmp_path):
    pytest.importorskip("duckdb")
    _fixed_dataset(tmp_path)
    sql = ("SELECT host, date, comm, mapping, sum(rss) AS rss, sum(uss) AS uss, sum(swap) AS swap FROM samples "
           "GROUP BY host, date, comm, mapping ORDER BY host, rss DESC, mapping")
    r = run("query", str(tmp_path), sql)
    assert r.code == 0, r.err
    check("query.txt", r.out)
    r = run("query", str(tmp_path), sql, "--format", "csv")
    check("query.csv", r.out)


def test_dataset_round_trip(tmp_path):
    """What sample_rows gives comes back from the file, column by column."""
    from pmaps.store.dataset import COLUMNS, table_bytes

    s = load_sample(GOLDEN / "time_a.parquet")
    ident = Identity("h", "b", "k", s.pid, 7, 1796000000.5, s.comm, None, None, None)
    cols = sample_rows(s, ident, {"/x": "ab12"})
    (tmp_path / "f.parquet").write_bytes(table_bytes(cols))
    back = pq.read_table(tmp_path / "f.parquet").to_pydict()
    assert list(back) == [n for n, _ in COLUMNS]
    for name, values in cols.items():
        if name in ("time", "start_time"):
            assert [v.timestamp() for v in back[name]] == values
        else:
            assert back[name] == values, name
    assert any(v is not None for v in back["rss"]) and sum(back["rss"]) > 0
