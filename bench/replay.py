"""The kernel floor of `pmaps PID`: record its pagemap/kpageflags/kpagecount reads, replay them in C.

bench.py --replay uses it: `record` runs pmaps once under strace on the target and keeps the reads
of the target's pagemap and of /proc/kpageflags and /proc/kpagecount (offset and size of each, in
the order made); `build` compiles bench/replay.c; the "C replay" command then makes exactly those
reads, plus pmaps' PAGEMAP_SCAN calls, on two threads with no Python, numpy, pacing or output. A
still target reads the same on every run, so the replay times the kernel work pmaps cannot avoid.
Standalone:  python bench/replay.py PID [-- PMAPS ARGV...]   records, builds, runs it once.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# "1796159216.284024 openat(AT_FDCWD, "/proc/7561/pagemap", O_RDONLY|O_CLOEXEC) = 3"
_OPEN = re.compile(r'^(\d+\.\d+) openat\(AT_FDCWD, "([^"]*)", [^)]*\) = (\d+)')
_CLOSE = re.compile(r"^(\d+\.\d+) close\((\d+)\)")
# "1796159218.172966 pread64(4, ""..., 256, 35716608) = 256" (-s 0: no buffer bytes)
_PREAD = re.compile(r'^(\d+\.\d+) pread64\((\d+), "".*?, (\d+), (\d+)\) = (-?\d+)')
# "1796159242.136651 preadv2(3, [...], 1, 183429892432, 0) = 10240" (pmaps reads pagemap so: procfs.py);
# the size read is the one returned (pagemap returns short only at the end of the address space)
_PREADV = re.compile(r'^(\d+\.\d+) preadv2?\((\d+), \[.*?\], \d+, (\d+)(?:, \d+)?\) = (-?\d+)')


def parse(lines: Iterable[str], pid: int) -> list[tuple[int, int, int]]:
    """(file, count, offset) of each pread (or preadv) of the target's pagemap (0), kpageflags (1) and kpagecount
    (2), in time order, from strace -ttt lines of all threads (any order: sorted here)."""
    files = {f"/proc/{pid}/pagemap": 0, "/proc/kpageflags": 1, "/proc/kpagecount": 2}
    events = sorted((float(m.group(1)), kind, m) for line in lines
                    for kind, rx in (("o", _OPEN), ("c", _CLOSE), ("r", _PREAD), ("v", _PREADV))
                    if (m := rx.match(line)) is not None)
    fds: dict[int, int] = {}
    ops: list[tuple[int, int, int]] = []
    for _, kind, m in events:
        if kind == "o":
            fds[int(m.group(3))] = files.get(m.group(2), -1)
        elif kind == "c":
            fds.pop(int(m.group(2)), None)
        elif fds.get(int(m.group(2)), -1) < 0:
            continue
        elif kind == "r" and int(m.group(5)) > 0:
            ops.append((fds[int(m.group(2))], int(m.group(3)), int(m.group(4))))
        elif kind == "v" and int(m.group(4)) > 0:
            ops.append((fds[int(m.group(2))], int(m.group(4)), int(m.group(3))))
    return ops


def record(argv: list[str], pid: int, env: dict[str, str], dest: Path) -> int:
    """Run argv (pmaps reading `pid`) once under strace; write its reads to `dest`; their number."""
    if shutil.which("strace") is None:
        raise RuntimeError("strace is not installed (apt-get install strace)")
    with tempfile.TemporaryDirectory(prefix="pmaps-replay-") as d:
        subprocess.run(["strace", "-ff", "-ttt", "-s", "0", "-e", "trace=openat,close,pread64,preadv,preadv2",
                        "-o", f"{d}/t", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        lines: list[str] = []
        for f in Path(d).iterdir():
            lines += f.read_text(errors="replace").splitlines()
    ops = parse(lines, pid)
    dest.write_text("".join(f"{f} {n} {o}\n" for f, n, o in ops))
    return len(ops)


def build(dest: Path) -> Path:
    """bench/replay.c compiled into `dest` (a file path)."""
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(dest), str(HERE / "replay.c")], check=True)
    return dest


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    pid = int(argv[0])
    pmaps = argv[argv.index("--") + 1:] if "--" in argv else [sys.executable, "-m", "pmaps", str(pid)]
    with tempfile.TemporaryDirectory(prefix="pmaps-replay-") as d:
        n = record(pmaps, pid, dict(__import__("os").environ), Path(d) / "ops")
        exe = build(Path(d) / "replay")
        print(f"{n} reads recorded", file=sys.stderr)
        return subprocess.run([str(exe), str(pid), str(Path(d) / "ops")]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
