#!/usr/bin/env python3
"""Benchmark pmaps over time (issue 4): sample cost, watch overhead, bytes per recorded sample.

    python bench/bench_time.py [--gib 8] [--runs 5] [--seconds 6]

1. An S GiB target from tests/memchild.py (60% written anon in 256 MiB VMAs, 15% every-16th-page
   anon, 15% zero page, 10% file): the median time of a full sample (pagemap + kpageflags +
   kpagecount, into ranges) and of a pagemap-only sample, against `cat /proc/PID/smaps`, in the
   same run; the recorded bytes per sample (Parquet, ranges).
2. A target that writes 512 MiB in a loop and counts passes: its throughput alone, then while
   `pmaps watch --interval 1` samples it (plain output to /dev/null); the slowdown in %.
Run as root (kpageflags); at most one target is resident at a time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from memchild import MemChild  # noqa: E402

from pmaps.collector import Options, Process, take_sample  # noqa: E402
from pmaps.store.recording import sample_bytes  # noqa: E402

GIB, MIB = 1 << 30, 1 << 20
PAGE = 4096
WRITER = """
import mmap, sys, time
m = mmap.mmap(-1, 512 << 20)
chunk = b"x" * (1 << 20)
n = 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for off in range(0, 512 << 20, 1 << 20):
        m[off:off + (1 << 20)] = chunk
    n += 1
print(n)
"""


def specs(gib: float) -> list[str]:
    total = int(gib * GIB)
    dense = total * 60 // 100 // PAGE * PAGE
    out = [f"anon{i}:anon:{256 * MIB}" for i in range(dense // (256 * MIB))]
    out.append(f"sparse:anon:{total * 15 // 100 // PAGE * PAGE}:every=16")
    out.append(f"zero:zero:{total * 15 // 100 // PAGE * PAGE}")
    out.append(f"file:file:{total * 10 // 100 // PAGE * PAGE}")
    return out


def timed(fn, runs: int) -> float:
    fn()  # warm up
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def sample_costs(gib: float, runs: int) -> list[tuple[str, str]]:
    rows = []
    with MemChild(specs(gib), timeout=900) as mc:
        pid = mc.pid
        t_smaps = timed(lambda: subprocess.run(["cat", f"/proc/{pid}/smaps"], stdout=subprocess.DEVNULL, check=True),
                        runs)
        res = {}
        for f in ("full", "pagemap"):
            with Process(pid, Options.fields(f)) as proc:
                holder = {}
                res[f] = timed(lambda: holder.__setitem__("s", take_sample(proc)), runs)
                s = holder["s"]
                res[f + "_bytes"] = len(sample_bytes(s))
                res[f + "_ranges"] = len(s)
        rows += [
            ("target", f"{gib:g} GiB memchild (60% anon in 256 MiB VMAs, 15% sparse, 15% zero, 10% file)"),
            ("cat /proc/PID/smaps", f"{t_smaps * 1000:.0f} ms"),
            ("full sample (flags+counts)", f"{res['full'] * 1000:.0f} ms  (goal <= 500 ms)"),
            ("pagemap-only sample", f"{res['pagemap'] * 1000:.0f} ms = {res['pagemap'] / t_smaps:.2f}x cat smaps "
                                    f"(goal <= 1.2x)"),
            ("recorded sample, full", f"{res['full_bytes']:,} bytes ({res['full_ranges']:,} ranges)"),
            ("recorded sample, pagemap", f"{res['pagemap_bytes']:,} bytes ({res['pagemap_ranges']:,} ranges)"),
        ]
    return rows


def throughput(seconds: float, watch: bool) -> float:
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(seconds)], stdout=subprocess.PIPE, text=True)
    p = None
    if watch:
        time.sleep(0.3)  # let it map its memory
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        p = subprocess.Popen([sys.executable, "-m", "pmaps", "watch", str(w.pid), "--interval", "1"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, _ = w.communicate()
    if p is not None:
        p.terminate()
        p.wait()
    return int(out) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=6)
    a = ap.parse_args()
    rows = sample_costs(a.gib, a.runs)
    alone = statistics.median(throughput(a.seconds, False) for _ in range(2))
    watched = statistics.median(throughput(a.seconds, True) for _ in range(2))
    rows += [("writer alone", f"{alone:.2f} passes/s over 512 MiB"),
             ("writer watched (1 s)", f"{watched:.2f} passes/s: slowdown {100 * (1 - watched / alone):.1f}% "
                                      f"(goal < 5%)")]
    w = max(len(k) for k, _ in rows)
    print(f"pmaps bench_time: {os.uname().release}, {os.cpu_count()} CPUs, median of {a.runs}")
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    main()
