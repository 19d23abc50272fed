#!/usr/bin/env python3
"""Benchmark `pmaps files -r` and `pmaps cgroups` against the plain ways to get the same numbers:

    python bench/bench_files.py [--files 10000] [--total 4G] [--dir /var/tmp] [--repeat 5]
                                [--baseline OTHER/src] [--keep DIR] [--no-files]
                                [--big-gib 8 --big-kind anon|shmem]

Builds a tree of FILES files of TOTAL bytes (100 directories), every other file read back into
the page cache, then times, in the same run (best of REPEAT, Python start-up included for pmaps;
the commands run in turn, round after round, so that a machine whose speed changes meanwhile
slows them all alike):
  fincore     util-linux `fincore --bytes` over the same files (given as arguments: no walk)
  mincore     a vmtouch-like walk written here: os.walk, open, mmap, mincore, count (Python)
  pmaps       `pmaps files -r DIR --format json` (walk + cachestat per file)
  pmaps-top   `pmaps files -r DIR --top 10`
and for the cgroups view:
  baseline    read every memory.stat + one pass over /proc/kpageflags and /proc/kpagecgroup
  cgroups     `pmaps cgroups --no-mapped --format json`
  cgroups+map `pmaps cgroups --format json` (also scans every process)
With --big-gib N, a process holding N GiB (private anonymous, or shared anonymous = shmem with
--big-kind shmem) runs during the cgroups part: the case where scanning every process costs most.
With --baseline, the pmaps rows run a second time from another checkout's src/ (PYTHONPATH),
interleaved with these: before/after ratios from one run. Both trees' bytecode is compiled
first (an installed pmaps has its .pyc; PYTHONDONTWRITEBYTECODE would otherwise make every run
compile pmaps' sources). The tree is removed afterwards unless --keep names a tree to reuse
(built there if missing). Root for the cgroups part.
"""
from __future__ import annotations

import argparse
import compileall
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


def timed_rounds(fns: list, repeat: int) -> list[float]:
    """Best time of each function over `repeat` rounds; each round runs every function once, in turn."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def run(argv: list[str], src: str | None = None) -> None:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)


def table(rows: list[tuple[str, float]], what: str) -> None:
    base = rows[0][1]
    width = max(26, *(len(n) for n, _ in rows))
    print(f"{'what':{width}} {'seconds':>8} {'x ' + what:>12}")
    for name, sec in rows:
        print(f"{name:{width}} {sec:8.3f} {sec / base:12.2f}")


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
    for d, _, _ in os.walk("/sys/fs/cgroup/memory"):
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


BIG = r"""
import mmap, sys
size = int(float(sys.argv[1]) * (1 << 30))
flags = mmap.MAP_SHARED if sys.argv[2] == "shmem" else mmap.MAP_PRIVATE
m = mmap.mmap(-1, size, flags=flags | mmap.MAP_ANONYMOUS)
for i in range(0, size, 4096):
    m[i] = 1
print("ready", flush=True)
sys.stdin.read()
"""


def cgroups_part(a: argparse.Namespace, srcs: list[tuple[str, str | None]]) -> None:
    """pmaps cgroups against every memory.stat + one kpageflags/kpagecgroup pass (root)."""
    if os.geteuid() != 0 or not os.path.exists("/proc/kpagecgroup"):
        print("# cgroups part skipped: needs root and /proc/kpagecgroup")
        return
    big = None
    if a.big_gib:
        big = subprocess.Popen([sys.executable, "-c", BIG, str(a.big_gib), a.big_kind], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert big.stdout is not None and big.stdout.readline().strip() == "ready"
        print(f"# a {a.big_gib:g} GiB {a.big_kind} process runs meanwhile (pid {big.pid})")
    try:
        names = ["memory.stat + kpage pass"]
        fns = [kpage_baseline]
        for tag, src in srcs:
            names += [f"pmaps cgroups --no-mapped{tag}", f"pmaps cgroups{tag}"]
            fns += [lambda src=src: run([*PMAPS, "cgroups", "--no-mapped", "--format", "json"], src),
                    lambda src=src: run([*PMAPS, "cgroups", "--format", "json"], src)]
        table(list(zip(names, timed_rounds(fns, min(a.repeat, 3) if not a.no_files else a.repeat))), "baseline")
    finally:
        if big is not None:
            big.kill()
            big.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--total", type=size_arg, default=4 << 30)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", metavar="SRC", help="another checkout's src/ to time beside this one")
    ap.add_argument("--keep", metavar="DIR", help="build the tree here (or reuse it) and keep it")
    ap.add_argument("--no-cgroups", action="store_true", help="time the files part only")
    ap.add_argument("--no-files", action="store_true", help="time the cgroups part only (no tree)")
    ap.add_argument("--big-gib", type=float, default=0, help="a process of this many GiB during the cgroups part")
    ap.add_argument("--big-kind", choices=("anon", "shmem"), default="anon")
    a = ap.parse_args()
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    for src in (here, a.baseline):
        if src:
            compileall.compile_dir(os.path.join(src, "pmaps"), quiet=1)
    srcs = [("", None)] + ([(" (baseline)", a.baseline)] if a.baseline else [])
    if a.no_files:
        cgroups_part(a, srcs)
        return 0
    top = a.keep or tempfile.mkdtemp(dir=a.dir, prefix="pmaps-bench-")
    try:
        t = time.perf_counter()
        if a.keep and os.path.isdir(os.path.join(top, "d000")):
            paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs)
            print(f"# tree: {len(paths)} files reused from {top}")
        else:
            os.makedirs(top, exist_ok=True)
            paths = build(top, a.files, a.total)
            print(f"# tree: {a.files} files, {a.total / (1 << 30):.1f} GiB, built in {time.perf_counter() - t:.1f} s")
        names = ["fincore", "mincore walk"]
        fns = [lambda: run(["fincore", "--bytes", *paths]), lambda: mincore_walk(top)]
        for tag, src in srcs:
            names += [f"pmaps files{tag}", f"pmaps files --top 10{tag}"]
            fns += [lambda src=src: run([*PMAPS, "files", "-r", top, "--format", "json"], src),
                    lambda src=src: run([*PMAPS, "files", "-r", top, "--top", "10"], src)]
        table(list(zip(names, timed_rounds(fns, a.repeat))), "fincore")
        if not a.no_cgroups:
            cgroups_part(a, srcs)
    finally:
        if not a.keep:
            shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
