"""How much pmaps disturbs the process it reads: the target's own mmap/munmap latency while each
reader runs (issue: "gentle on the target"). A C target (bench/impact_target.c, built here with gcc)
writes --gib GiB, then loops mmap/munmap of 64 KiB on CPU 0, recording every iteration; each reader
runs repeatedly on CPU 1 for --seconds; p50/p99/p99.9/max of the target's iterations are printed per
phase, idle first. Root. A script, not a test: timing varies with the machine.

    python bench/bench_impact.py [--gib 8] [--seconds 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    exe = Path(tempfile.mkdtemp(prefix="pmaps-impact-")) / "target"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(HERE / "impact_target.c")], check=True)
    t = subprocess.Popen([str(exe), str(a.gib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert t.stdout is not None and t.stdin is not None
    assert t.stdout.readline().strip() == "ready"
    pid = str(t.pid)
    py = [sys.executable, "-m", "pmaps"]
    phases = {
        "idle": None,
        "cat smaps_rollup": ["cat", f"/proc/{pid}/smaps_rollup"],
        "cat smaps": ["cat", f"/proc/{pid}/smaps"],
        "pmaps PID": [*py, pid],
        "pmaps --summary": [*py, "--summary", pid],
        "pmaps top -p": [*py, "top", "-p", pid],
        "pmaps watch (1 s)": [*py, "watch", pid, "--interval", "1", "--count", str(int(a.seconds) + 1)],
    }

    def cmd(c: str) -> str:
        t.stdin.write(c + "\n")  # type: ignore[union-attr]
        t.stdin.flush()  # type: ignore[union-attr]
        return t.stdout.readline().strip()  # type: ignore[union-attr]

    print(f"# target: {a.gib} GiB written, mmap/munmap 64 KiB in a loop on CPU 0; readers on CPU 1; "
          f"{a.seconds:g} s per phase; latency of the target's iterations in microseconds")
    print(f"{'phase':<20} {'iterations':>10} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>9} {'reads':>6}")
    try:
        for name, argv in phases.items():
            cmd("reset")
            end = time.monotonic() + a.seconds
            runs = 0
            while time.monotonic() < end:
                if argv is None:
                    time.sleep(a.seconds)
                    break
                subprocess.run(["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(HERE.parent / "src")))
                runs += 1
            n, p50, p99, p999, mx = cmd("stats").split()
            print(f"{name:<20} {n:>10} {p50:>8} {p99:>8} {p999:>8} {mx:>9} {runs:>6}")
    finally:
        t.kill()
        t.wait()


if __name__ == "__main__":
    main()
