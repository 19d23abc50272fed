#!/usr/bin/env python3
"""Benchmark `pmaps top` against the kernel's own walk, on a loaded machine built here (root):

    python bench/bench_top.py [--procs 184] [--each 24M] [--workers 16] [--shared 1G]

Builds PROCS memchild processes of EACH private anon memory plus a parent with WORKERS forked
workers sharing SHARED copy-on-write (a quarter of it then diverged by each worker in turn), then
times, in the same run:
  baseline  `cat` of the smaps_rollup of the same processes + one pass over /proc/kpageflags and
            /proc/kpagecount (every PFN)
  top       `pmaps top -p PIDS --format json` (one scan, one kpage lookup for the union of PFNs)
  top-all   `pmaps top` over every process on the machine
  summary   `pmaps --summary PID...`: the per-process path (kpage lookups per process), one run
and prints a table with ratios to the baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PMAPS = [sys.executable, "-m", "pmaps"]


def timed(argv: list[str], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=184)
    ap.add_argument("--each", default="24M")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--shared", default="1G")
    a = ap.parse_args()
    children: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        for _ in range(a.procs):
            p = subprocess.Popen([sys.executable, str(ROOT / "tests/memchild.py"), f"a:anon:{a.each}"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            children.append(p)
        pids = []
        for p in children:
            pids.append(json.loads(p.stdout.readline())["pid"])  # type: ignore[union-attr]
        fam = subprocess.Popen([sys.executable, str(ROOT / "tests/forkchild.py"), "--workers", str(a.workers),
                                "--cow", a.shared], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        children.append(fam)  # type: ignore[arg-type]
        info = json.loads(fam.stdout.readline())  # type: ignore[union-attr]
        pages = int(info["regions"]["cow"][1] - info["regions"]["cow"][0]) // 4096
        for i in range(a.workers):
            lo = (i % 4) * pages // 4
            fam.stdin.write(f"diverge {i} {lo} {lo + pages // 16}\n")  # type: ignore[union-attr]
            fam.stdin.flush()  # type: ignore[union-attr]
            fam.stdout.readline()  # type: ignore[union-attr]
        pids += [info["parent"], *info["workers"]]
        build = time.perf_counter() - t0
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        os.environ.update(env)
        rss = sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) for p in pids) * 4096
        rollups = [f"/proc/{p}/smaps_rollup" for p in pids]
        t_roll = timed(["cat", *rollups])
        t_kpage = timed(["sh", "-c", "cat /proc/kpageflags /proc/kpagecount > /dev/null"])
        base = t_roll + t_kpage
        plist = ",".join(map(str, pids))
        t_top = timed([*PMAPS, "top", "-p", plist, "--format", "json"])
        t_all = timed([*PMAPS, "top", "--format", "json"])
        t_sum = timed([*PMAPS, "--summary", "--format", "json", *map(str, pids)], repeat=1)
        t_start = timed([*PMAPS, "--version"])
        print(f"# {len(pids)} processes, {rss / 2**30:.1f} GiB resident (RSS sum), {a.workers} workers sharing "
              f"{a.shared}; built in {build:.0f} s; Python start-up {t_start:.2f} s (in every pmaps figure)")
        rows = [("cat smaps_rollup (same processes)", t_roll), ("one kpageflags+kpagecount pass", t_kpage),
                ("baseline = both", base), ("pmaps top -p PIDS", t_top), ("pmaps top (whole machine)", t_all),
                ("pmaps --summary PID... (per process)", t_sum)]
        print(f"{'what':<40} {'seconds':>8} {'x baseline':>10}")
        for name, t in rows:
            print(f"{name:<40} {t:8.2f} {t / base:10.2f}")
    finally:
        for p in children:
            try:
                p.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
        for p in children:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
