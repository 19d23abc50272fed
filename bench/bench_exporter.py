#!/usr/bin/env python3
"""Benchmark `pmaps exporter` and fleet datasets on a machine loaded here (root; not a timed test):

    python bench/bench_exporter.py [--procs 190] [--target 8G] [--duration 300] [--interval 30] [--no-dataset]
                                   [--exporter-args '--cache-max 0']

Builds PROCS small memchild processes and one TARGET-sized one, then:
  exporter  runs `pmaps exporter` at --interval for --duration seconds and reports the scan cost
            (its pmaps_scan_duration_seconds / pmaps_scan_cpu_seconds), the exporter's CPU averaged
            over the run (utime+stime from /proc/PID/stat), scrape latency (p50/p99 of 1000
            sequential scrapes) and its RSS;
  dataset   bytes per sample of the target (record --dataset), bytes of one file holding one sample
            of every process (what a `top` sample would be), and DuckDB (`pmaps query`) time over
            1000 recorded samples.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
PMAPS = [sys.executable, "-m", "pmaps"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def spawn(spec: str) -> tuple[subprocess.Popen[bytes], int]:
    p = subprocess.Popen([sys.executable, str(ROOT / "tests/memchild.py"), spec], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    return p, int(json.loads(p.stdout.readline())["pid"])  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def metric(text: str, name: str) -> float:
    for ln in text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    return float("nan")


def bench_exporter(a: argparse.Namespace) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([*PMAPS, "exporter", "--listen", f"127.0.0.1:{port}", "--interval", str(a.interval),
                          *a.exporter_args.split()],
                         stderr=subprocess.PIPE, text=True, env=ENV)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        p.stderr.readline()  # type: ignore[union-attr]
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        durations, cpus, reused = [], [], []
        last = -1.0
        while time.monotonic() - t0 < a.duration:
            text = urllib.request.urlopen(url, timeout=10).read().decode()
            scans = metric(text, "pmaps_scans_total")
            if scans == scans and scans > 0 and scans != last:
                last = scans
                durations.append(metric(text, "pmaps_scan_duration_seconds"))
                cpus.append(metric(text, "pmaps_scan_cpu_seconds"))
                reused.append(metric(text, "pmaps_scan_reused_processes"))
            time.sleep(1)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        lat = []
        for _ in range(1000):
            t = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=10).read()
            lat.append(time.perf_counter() - t)
        lat.sort()
        text = body.decode()
        series = sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))
        return {"scans": last, "scan_s_median": sorted(durations)[len(durations) // 2],
                "scan_cpu_s_median": sorted(cpus)[len(cpus) // 2],
                "scan_cpu_s_first": cpus[0], "scan_cpu_s_min": min(cpus), "scan_cpu_s_max": max(cpus),
                "scans_reusing": float(sum(1 for r in reused if r > 0)),
                "reused_processes_median": sorted(reused)[len(reused) // 2],
                "cpu_pct_avg_incl_scrapes_startup": 100 * (c1 - c0) / (t1 - t0),
                "scrape_ms_p50": 1000 * lat[500], "scrape_ms_p99": 1000 * lat[989],
                "exporter_rss_mib": metric(text, "pmaps_exporter_rss_bytes") / 2**20,
                "scan_cache_mib": metric(text, "pmaps_scan_cache_bytes") / 2**20,
                "series": series, "bytes_per_scrape": len(body)}
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def bench_dataset(target: int, pids: list[int]) -> dict[str, float]:
    from pmaps.analysis.dataset import Identity, sample_rows
    from pmaps.collector import Options, Process, take_sample
    from pmaps.store.dataset import table_bytes

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([*PMAPS, "record", str(target), "--dataset", f"{d}/t", "--count", "3", "--interval", "1"],
                           capture_output=True, text=True, env=ENV, check=True)
        out["target_bytes_per_sample"] = float(r.stderr.strip().rsplit(";", 1)[1].split()[0])
        cols: dict[str, list] = {}
        t = time.perf_counter()
        for pid in pids:
            try:
                with Process(pid, Options.fields("full")) as proc:
                    s = take_sample(proc)
            except Exception:
                continue
            ident = Identity("h", "b", "k", pid, 0, 0.0, s.comm, None, None, 0)
            for k, v in sample_rows(s, ident, {}).items():
                cols.setdefault(k, []).extend(v)
        out["all_procs_sample_s"] = time.perf_counter() - t
        out["all_procs_bytes_per_sample"] = float(len(table_bytes(cols)))
        out["all_procs_rows"] = float(len(cols["pid"]))
        small = pids[0]
        subprocess.run([*PMAPS, "record", str(small), "--dataset", f"{d}/k", "--count", "1000", "--interval", "0.001",
                        "-q"], capture_output=True, env=ENV, check=True)
        sql = ("SELECT comm, round(sum(thp) * 100 / sum(rss), 1) AS thp_pct, sum(rss) / count(DISTINCT time) AS rss "
               "FROM samples WHERE mapping IN ('[heap]', '[anon]') GROUP BY comm ORDER BY thp_pct DESC, comm")
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([*PMAPS, "query", f"{d}/k", sql], capture_output=True, env=ENV, check=True)
            best = min(best, time.perf_counter() - t)
        out["duckdb_query_1000_samples_cli_s"] = best
        import duckdb

        from pmaps.store.dataset import arrow_tables

        con = duckdb.connect()
        con.register("samples", arrow_tables(d + "/k")[0]["samples"])  # as pmaps query does
        t = time.perf_counter()
        con.execute(sql).fetchall()
        out["duckdb_query_1000_samples_inproc_s"] = time.perf_counter() - t
        out["files_1000"] = float(sum(1 for _ in Path(d, "k").rglob("*.parquet")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=190)
    ap.add_argument("--each", default="4M")
    ap.add_argument("--target", default="8G")
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--interval", type=float, default=30)
    ap.add_argument("--no-dataset", action="store_true", help="measure the exporter only")
    ap.add_argument("--exporter-args", default="", help="more arguments for the exporter, e.g. '--cache-max 0'")
    a = ap.parse_args()
    kids: list[subprocess.Popen[bytes]] = []
    try:
        t = time.perf_counter()
        pids = []
        for _ in range(a.procs):
            p, pid = spawn(f"a:anon:{a.each}")
            kids.append(p)
            pids.append(pid)
        p, target = spawn(f"big:anon:{a.target}")
        kids.append(p)
        print(f"# built {a.procs} x {a.each} + {a.target} target in {time.perf_counter() - t:.1f} s; "
              f"{len(os.listdir('/proc'))} /proc entries", flush=True)
        res = bench_exporter(a)
        if not a.no_dataset:
            res |= bench_dataset(target, pids)
        for k, v in res.items():
            print(f"{k:40s} {v:12.4f}")
    finally:
        for p in kids:
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
