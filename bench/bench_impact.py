"""How much pmaps disturbs the process it reads: the target's own mmap/munmap latency while each
reader runs (issue: "gentle on the target"). A C target (bench/impact_target.c, built here with gcc)
writes --gib GiB (8; a fraction such as 0.25 for a smoke run), then a thread pinned to CPU 0 loops
mmap/munmap of 64 KiB, recording every iteration; each reader runs back to back, pinned to the
other CPUs (taskset), for --seconds; p50/p99/p99.9/max of the target's iterations are printed per
phase, idle first. Phases: idle, `cat smaps_rollup`, `cat smaps`, `pmaps PID`, `pmaps --summary
PID`, `pmaps top -p PID`, `pmaps top` (every process), `pmaps watch PID` at its default interval.
Root. A script, not a test: timing varies with the machine.

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
PROBE_CPU = 0  # impact_target.c pins its loop here


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=8.0, help="GiB the target writes (default 8; fractions allowed)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per phase (default 5)")
    a = ap.parse_args()
    readers = sorted(os.sched_getaffinity(0) - {PROBE_CPU})
    if PROBE_CPU not in os.sched_getaffinity(0) or not readers:
        sys.exit(f"bench_impact: needs CPU {PROBE_CPU} for the probe and another CPU for the readers")
    cpus = ",".join(map(str, readers))
    exe = Path(tempfile.mkdtemp(prefix="pmaps-impact-")) / "target"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(HERE / "impact_target.c")], check=True)
    t = subprocess.Popen([str(exe), f"{a.gib:g}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert t.stdout is not None and t.stdin is not None
    assert t.stdout.readline().strip() == "ready"
    pid = str(t.pid)
    py = [sys.executable, "-m", "pmaps"]
    watch_samples = max(2, int(a.seconds) + 1)  # at the default interval (1 s), about the phase's length
    phases: dict[str, list[str] | None] = {
        "idle": None,
        "cat smaps_rollup": ["cat", f"/proc/{pid}/smaps_rollup"],
        "cat smaps": ["cat", f"/proc/{pid}/smaps"],
        "pmaps PID": [*py, pid],
        "pmaps --summary": [*py, "--summary", pid],
        "pmaps top -p PID": [*py, "top", "-p", pid],
        "pmaps top": [*py, "top"],
        "pmaps watch (default)": [*py, "watch", pid, "--count", str(watch_samples)],
        # Not pmaps: a bare reader of the whole pagemap, back to back (the kernel takes and drops the
        # mmap_lock every 2 MiB): how much a stream of short read holds alone costs the target.
        "raw pagemap reads": [sys.executable, "-c", RAW_PAGEMAP, pid],
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                                    os.environ.get("PYTHONPATH")])))

    def cmd(c: str) -> str:
        t.stdin.write(c + "\n")  # type: ignore[union-attr]
        t.stdin.flush()  # type: ignore[union-attr]
        return t.stdout.readline().strip()  # type: ignore[union-attr]

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"# target: {a.gib:g} GiB written, mmap/munmap 64 KiB in a loop on CPU {PROBE_CPU}; readers on CPU "
          f"{cpus}; {a.seconds:g} s per phase (watch: {watch_samples} samples at its default interval); "
          f"latency of the target's iterations in microseconds; load average {load}")
    print(f"{'phase':<22} {'iterations':>10} {'p50':>8} {'p99':>8} {'p99.9':>9} {'max':>9} {'reads':>6}")
    failed = False
    try:
        for name, argv in phases.items():
            cmd("reset")
            end = time.monotonic() + a.seconds
            runs = 0
            while time.monotonic() < end:
                if argv is None:
                    time.sleep(a.seconds)
                    break
                r = subprocess.run(["taskset", "-c", cpus, *argv], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=env)
                if r.returncode != 0:
                    print(f"# {name}: exit {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
                    failed = True
                    break
                runs += 1
            n, p50, p99, p999, mx = cmd("stats").split()
            print(f"{name:<22} {n:>10} {p50:>8} {p99:>8} {p999:>9} {mx:>9} {runs:>6}", flush=True)
        os.sched_setaffinity(0, readers)  # measured where the readers run, off the probe's CPU
        holds(int(pid))
    finally:
        t.kill()
        t.wait()
    return 1 if failed else 0


RAW_PAGEMAP = r"""
import os, sys
pid = sys.argv[1]
fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
for line in open(f"/proc/{pid}/maps"):
    a, b = (int(x, 16) for x in line.split()[0].split("-"))
    for off in range(a, b, 1 << 30):
        os.pread(fd, (min(b, off + (1 << 30)) - off) // 4096 * 8, off // 4096 * 8)
"""


def holds(pid: int) -> None:
    """The longest a pmaps read holds the target's mmap_lock: each PAGEMAP_SCAN call takes it once
    for its whole walk (fs/proc/task_mmu.c do_pagemap_scan), so a call's duration bounds one hold;
    pagemap reads take it per 2 MiB window (pagemap_read, PAGEMAP_WALK_SIZE)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from pmaps.collector.process import SCAN_MAX_PAGES
    from pmaps.kernel import procfs
    from pmaps.kernel.pagemap import PAGES_RETURN_MASK, TASK_SIZE_MAX, Scanner

    fd = procfs.open_pagemap(pid)
    scanner = Scanner(fd, pid, returns=PAGES_RETURN_MASK, max_pages=SCAN_MAX_PAGES)
    times: list[float] = []
    real = scanner._ioctl  # type: ignore[attr-defined]

    def timed(*args: object) -> object:
        t0 = time.perf_counter()
        try:
            return real(*args)
        finally:
            times.append((time.perf_counter() - t0) * 1e6)

    scanner._ioctl = timed  # type: ignore[attr-defined]
    for _ in range(20):
        scanner.regions(0, TASK_SIZE_MAX)
    procfs.close(fd)
    times.sort()
    q = lambda f: times[int((len(times) - 1) * f)]  # noqa: E731
    print(f"# PAGEMAP_SCAN calls of pmaps' reads ({len(times)}, max {SCAN_MAX_PAGES} pages each): duration "
          f"p50 {q(0.5):.0f} us, p99 {q(0.99):.0f} us, max {q(1.0):.0f} us (each bounds one mmap_lock hold)")


if __name__ == "__main__":
    sys.exit(main())
