#!/usr/bin/env python3
"""Benchmark `pmaps top` against the kernel's own walk and against smem2 and ps_mem, on a loaded
machine built here (root):

    python bench/bench_top.py [--procs 184] [--each 24M] [--workers 16] [--shared 1G] [--runs 5]

Builds PROCS memchild processes of EACH private anon memory plus a parent with WORKERS forked
workers sharing SHARED copy-on-write (a quarter of it then diverged by each worker in turn), then
times, in the same interleaved run (one run of each per round, the order rotated every round,
round 0 a dropped warm-up; every command reads the same processes but `top` whole-machine):
  rollups   `cat` of the smaps_rollup of the same processes: the reference of the ratios
  every     `cat /proc/*/smaps_rollup`: every process's, the reference of `pmaps top` whole-machine
  kpage     one pass over /proc/kpageflags and /proc/kpagecount (every PFN)
  top       `pmaps top -p PIDS --format json` (smaps_rollup up to --rollup-max, pmaps' own share taken
            out page by page; bigger processes streamed page by page); with --include-self (no
            observer correction); with --source pages (one kpage lookup for the union of PFNs)
  top-all   `pmaps top --format json` over every process on the machine
  summary   `pmaps --summary --format json PID...`: the per-process path (kpage lookups per process)
  smem2     `smem2 -P '^(PID|PID...)$'` (PyPI smem2; it reads smaps_rollup of the matching processes)
  ps_mem    `ps_mem -p PIDS` (PyPI ps_mem; smaps_rollup too)
  start-up  `pmaps --version`
and prints median seconds, the ratios to the rollups and to rollups + kpage ("baseline"), and
each command's peak RSS (ru_maxrss, see bench.py). smem2 and ps_mem are looked for beside this
Python (a venv's bin/) and on PATH; a missing one gets a line saying so.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402  (bench.py: the launcher, interleaved rounds, peak RSS)

PMAPS = [sys.executable, "-m", "pmaps"]


def find_tool(name: str) -> str | None:
    """`name` beside this interpreter (a venv's bin/) or on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=184)
    ap.add_argument("--each", default="24M")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--shared", default="1G")
    ap.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up (default 5)")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    bench.run_once(["true"], env)  # start the launcher before this process grows
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
        rss = sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) for p in pids) * 4096
        plist = ",".join(map(str, pids))
        cmds = [
            bench.Command("cat smaps_rollup (same processes)", ["cat", *[f"/proc/{p}/smaps_rollup" for p in pids]]),
            bench.Command("cat /proc/*/smaps_rollup (every process)",
                          ["sh", "-c", "cat /proc/[0-9]*/smaps_rollup > /dev/null 2>&1; true"]),
            bench.Command("one kpageflags+kpagecount pass",
                          ["sh", "-c", "cat /proc/kpageflags /proc/kpagecount > /dev/null"]),
            bench.Command("pmaps top -p PIDS", [*PMAPS, "top", "-p", plist, "--format", "json"]),
            bench.Command("pmaps top -p PIDS --include-self", [*PMAPS, "top", "-p", plist, "--include-self",
                                                               "--format", "json"]),
            bench.Command("pmaps top -p PIDS --source pages", [*PMAPS, "top", "-p", plist, "--source", "pages",
                                                               "--format", "json"]),
            bench.Command("pmaps top (whole machine)", [*PMAPS, "top", "--format", "json"]),
            bench.Command("pmaps --summary PID... (per process)", [*PMAPS, "--summary", "--format", "json",
                                                                   *map(str, pids)]),
        ]
        missing = []
        smem2 = find_tool("smem2")
        if smem2:
            regex = "^(" + "|".join(map(str, pids)) + ")$"  # smem2 matches -P against the pid too
            cmds.append(bench.Command("smem2 -P PIDS", [smem2, "-q", "-P", regex]))
        else:
            missing.append("smem2: not installed (pip install -e '.[bench]'): left out")
        ps_mem = find_tool("ps_mem")
        if ps_mem:
            cmds.append(bench.Command("ps_mem -p PIDS", [ps_mem, "-p", plist]))
        else:
            missing.append("ps_mem: not installed (pip install -e '.[bench]'): left out")
        cmds.append(bench.Command("pmaps --version (start-up)", [*PMAPS, "--version"]))
        print(f"# {len(pids)} processes, {rss / 2**30:.1f} GiB resident (RSS sum), {a.workers} workers sharing "
              f"{a.shared}; built in {build:.0f} s; median of {a.runs} interleaved rounds after a warm-up; "
              f"load average {bench._load()}", flush=True)
        timings = bench.interleaved(cmds, a.runs, env)
        roll = timings[0].median
        every = timings[1].median
        base = roll + timings[2].median
        print(f"{'what':<40} {'seconds':>8} {'x rollups':>10} {'x baseline':>10} {'peak RSS MB':>12}")
        for i, (cmd, t) in enumerate(zip(cmds, timings)):
            if t.error:
                print(f"{cmd.label:<40} FAILED: {t.error}")
                continue
            print(f"{cmd.label:<40} {t.median:8.3f} {t.median / roll:10.2f} {t.median / base:10.2f} "
                  f"{bench.fmt_rss(t):>12}")
            if i == 2:
                print(f"{'baseline = both':<40} {base:8.3f} {base / roll:10.2f} {1:10.2f}")
        whole = next(t for c, t in zip(cmds, timings) if c.label == "pmaps top (whole machine)")
        if not whole.error and every:
            print(f"# pmaps top (whole machine) / cat /proc/*/smaps_rollup (every process): {whole.median / every:.2f}")
        for line in missing:
            print(line)
        print(f"# load average at the end {bench._load()}; peak RSS `<= N`: below the launcher's own")
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
        if bench._launcher is not None:
            bench._launcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
