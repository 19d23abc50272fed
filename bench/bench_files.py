#!/usr/bin/env python3
"""Benchmark `pmaps files -r` and `pmaps cgroups` against the plain ways to get the same numbers:

    python bench/bench_files.py [--files 10000] [--total 4G] [--dir /var/tmp]

Builds a tree of FILES files of TOTAL bytes (100 directories), every other file read back into
the page cache, then times, in the same run (best of 3, Python start-up included for pmaps):
  fincore     util-linux `fincore --bytes` over the same files (given as arguments: no walk)
  mincore     a vmtouch-like walk written here: os.walk, open, mmap, mincore, count (Python)
  pmaps       `pmaps files -r DIR --format json` (walk + cachestat per file)
  pmaps-top   `pmaps files -r DIR --top 10`
and for the cgroups view:
  baseline    read every memory.stat + one pass over /proc/kpageflags and /proc/kpagecgroup
  cgroups     `pmaps cgroups --no-mapped --format json`
  cgroups+map `pmaps cgroups --format json` (also scans every process)
The tree is removed afterwards. Root for the cgroups part.
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

PMAPS = [sys.executable, "-m", "pmaps"]
PAGE = 4096
libc = ctypes.CDLL(None, use_errno=True)


def size_arg(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * mult[text[-1].upper()]) if text[-1].upper() in mult else int(text)


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(argv: list[str]) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def mincore_walk(top: str) -> int:
    """The vmtouch way: every file mapped and asked with mincore."""
    total = 0
    for d, _, files in os.walk(top):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if not size:
                    continue
                with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mm:
                    a = np.frombuffer(mm, np.uint8)
                    vec = np.zeros((size + PAGE - 1) // PAGE, np.uint8)
                    libc.mincore(ctypes.c_void_p(a.ctypes.data), ctypes.c_size_t(size),
                                 ctypes.c_void_p(vec.ctypes.data))
                    del a
                total += int(np.count_nonzero(vec & 1))
    return total


def kpage_baseline() -> None:
    for d, _, files in os.walk("/sys/fs/cgroup/memory"):
        with open(os.path.join(d, "memory.stat"), "rb") as f:
            f.read()
    buf = bytearray(8 << 20)
    for name in ("/proc/kpageflags", "/proc/kpagecgroup"):
        with open(name, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def build(top: str, nfiles: int, total: int) -> list[str]:
    each = max(PAGE, total // nfiles)
    data = os.urandom(each)
    paths = []
    for i in range(nfiles):
        d = os.path.join(top, f"d{i // 100:03d}")
        if i % 100 == 0:
            os.mkdir(d)
        p = os.path.join(d, f"f{i:05d}")
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
    os.sync()
    for i, p in enumerate(paths):
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if i % 2 == 0:
            while os.read(fd, 1 << 20):
                pass
        os.close(fd)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--total", type=size_arg, default=4 << 30)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    top = tempfile.mkdtemp(dir=a.dir, prefix="pmaps-bench-")
    try:
        t = time.perf_counter()
        paths = build(top, a.files, a.total)
        print(f"# tree: {a.files} files, {a.total / (1 << 30):.1f} GiB, built in {time.perf_counter() - t:.1f} s")
        rows = [("fincore", timed(lambda: run(["fincore", "--bytes", *paths]))),
                ("mincore walk", timed(lambda: mincore_walk(top))),
                ("pmaps files", timed(lambda: run([*PMAPS, "files", "-r", top, "--format", "json"]))),
                ("pmaps files --top 10", timed(lambda: run([*PMAPS, "files", "-r", top, "--top", "10"])))]
        base = rows[0][1]
        print(f"{'what':24} {'seconds':>8} {'x fincore':>10}")
        for name, s in rows:
            print(f"{name:24} {s:8.3f} {s / base:10.2f}")
        if os.geteuid() == 0 and os.path.exists("/proc/kpagecgroup"):
            rows = [("memory.stat + kpage pass", timed(kpage_baseline)),
                    ("pmaps cgroups --no-mapped", timed(lambda: run([*PMAPS, "cgroups", "--no-mapped", "--format",
                                                                      "json"]))),
                    ("pmaps cgroups", timed(lambda: run([*PMAPS, "cgroups", "--format", "json"])))]
            base = rows[0][1]
            print(f"{'what':26} {'seconds':>8} {'x baseline':>10}")
            for name, s in rows:
                print(f"{name:26} {s:8.3f} {s / base:10.2f}")
    finally:
        shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
