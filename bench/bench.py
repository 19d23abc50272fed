#!/usr/bin/env python3
"""Benchmark pmaps against processes with a known memory layout (tests/memchild.py).

    python bench/bench.py [--sizes 1,4,8] [--runs 5] [--targets mixed,thp8,reserve] [--pmaps CMD]

Targets, built one at a time (so at most one is resident) and killed afterwards:
  mixedS   S GiB: 60% fully written anon in 256 MiB VMAs, 15% anon written every 16th page,
           15% read-only anon (the shared zero page), 10% MAP_SHARED file fully read (page cache)
  thp8     8 GiB of MADV_HUGEPAGE anon in 256 MiB VMAs, fully written
  reserve  mixed1 plus a 64 TiB PROT_NONE MAP_NORESERVE reservation
Each command runs once to warm up, then --runs times; the table shows the median wall time and
the peak RSS (ru_maxrss from wait4) of the measured process, stdout going to /dev/null.

--pmaps CMD replaces the default `python -m pmaps` prefix.  In CMD, `{pid}` is replaced by the
target's pid and `{args}` by the command's extra arguments (e.g. `--format ndjson`); without
`{pid}` the extra arguments and the pid are appended, and a CMD with `{pid}` but no `{args}`
runs without the extra arguments.  Example, to check the harness itself:
    python bench/bench.py --sizes 1 --runs 3 --pmaps "cat /proc/{pid}/maps"
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def load_memchild() -> ModuleType:
    """Import tests/memchild.py by path: tests/ is not a package and not on sys.path."""
    path = REPO / "tests" / "memchild.py"
    spec = importlib.util.spec_from_file_location("memchild", path)
    if spec is None or spec.loader is None:
        sys.exit(f"bench: cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["memchild"] = mod
    spec.loader.exec_module(mod)
    return mod


memchild = load_memchild()


# ---------------------------------------------------------------------------
# targets


def _pages_bytes(n: float) -> int:
    """Round a byte count down to whole pages (region sizes must be page multiples)."""
    return int(n) // PAGE * PAGE


def mixed_specs(gib: float, prefix: str = "") -> list[str]:
    """The mixed target: 60% dense anon in 256 MiB VMAs, 15% sparse, 15% zero page, 10% file."""
    total = gib * GIB
    dense = _pages_bytes(total * 0.60)
    specs = [f"{prefix}anon{i}:anon:{256 * MIB}" for i in range(dense // (256 * MIB))]
    if dense % (256 * MIB):
        specs.append(f"{prefix}anon{len(specs)}:anon:{dense % (256 * MIB)}")
    specs.append(f"{prefix}sparse:anon:{_pages_bytes(total * 0.15)}:every=16")
    specs.append(f"{prefix}zero:zero:{_pages_bytes(total * 0.15)}")
    specs.append(f"{prefix}file:file:{_pages_bytes(total * 0.10)}")  # read fully: cache resident
    return specs


def thp_specs(gib: int) -> list[str]:
    return [f"thp{i}:thp:{256 * MIB}" for i in range(gib * GIB // (256 * MIB))]


@dataclass
class Target:
    name: str
    specs: list[str]


def make_targets(sizes: list[float], which: list[str]) -> list[Target]:
    out: list[Target] = []
    if "mixed" in which:
        out += [Target(f"mixed{s:g}", mixed_specs(s)) for s in sizes]
    if "thp8" in which:
        out.append(Target("thp8", thp_specs(8)))
    if "reserve" in which:
        out.append(Target("reserve", mixed_specs(1) + ["reserve:reserve:64T"]))
    return out


@dataclass
class Census:
    """What the target holds, counted from its smaps and the child's own account."""

    vmas: int = 0
    rss_pages: int = 0
    zero_pages: int = 0
    anon_huge_pages: int = 0

    @property
    def present(self) -> int:
        # smaps' Rss leaves out the shared zero page, but pagemap shows those pages present.
        return self.rss_pages + self.zero_pages


def census(mc: Any) -> Census:
    c = Census()
    for vma in memchild.read_smaps(mc.pid).values():
        c.vmas += 1
        c.rss_pages += vma.get("Rss", 0) * 1024 // PAGE
        c.anon_huge_pages += vma.get("AnonHugePages", 0) * 1024 // PAGE
    c.zero_pages = sum(
        memchild.runs_pages(r["touched"]) for r in mc.regions.values() if r["kind"] == "zero"
    )
    return c


# ---------------------------------------------------------------------------
# commands


@dataclass
class Command:
    label: str
    argv: list[str]
    note: str = ""


def expand(template: list[str], pid: int, extra: list[str]) -> tuple[list[str], str]:
    """Fill a --pmaps template for one target pid; return (argv, note)."""
    if not any("{pid}" in tok for tok in template):
        return [*template, *extra, str(pid)], ""
    argv: list[str] = []
    used_args = False
    for tok in template:
        if tok == "{args}":
            argv += extra
            used_args = True
        else:
            argv.append(tok.replace("{pid}", str(pid)))
    note = "" if used_args or not extra else "no {args} in template: run without them"
    return argv, note


def commands_for(template: list[str], pid: int) -> list[Command]:
    out = []
    for label, extra in (("pmaps", []), ("pmaps --format ndjson", ["--format", "ndjson"])):
        argv, note = expand(template, pid, extra)
        out.append(Command(label, argv, note))
    out.append(Command("cat smaps", ["cat", f"/proc/{pid}/smaps"]))
    return out


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    maxrss_kb: int = 0
    floor_kb: int = 0  # what ru_maxrss says for `true`: readings at or below it mean "at most this"
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """Run argv with stdout to /dev/null; return (wall s, ru_maxrss kB, exit code, stderr tail)."""
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=devnull, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            # wait4 rather than Popen.wait: it hands back the child's own rusage (peak RSS).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        err.seek(0)
        tail = err.read()[-600:].decode(errors="replace").strip()
    return elapsed, usage.ru_maxrss, proc.returncode, tail


def rss_floor(env: dict[str, str]) -> int:
    """ru_maxrss of `true` spawned like the measured commands.

    A process's ru_maxrss survives execve: the spawned child starts out with the high-water mark
    of the memory it was forked (vforked) from, i.e. this benchmark's own.  So a command whose real
    peak is lower than ours reads as our peak; report such readings as "<= floor".
    """
    return run_once(["true"], env)[1]


def measure(cmd: Command, runs: int, env: dict[str, str]) -> Timing:
    t = Timing(floor_kb=rss_floor(env))
    for i in range(runs + 1):  # the first run warms caches (imports, page tables) and is dropped
        sec, rss, rc, tail = run_once(cmd.argv, env)
        if rc != 0:
            t.error = f"exit {rc}: {tail.splitlines()[-1] if tail else ''}"
            return t
        if i:
            t.seconds.append(sec)
            t.maxrss_kb = max(t.maxrss_kb, rss)
    return t


# ---------------------------------------------------------------------------
# environment


def pmaps_env(template: list[str] | None) -> dict[str, str]:
    """The environment for the measured commands; for the default command, make sure pmaps imports."""
    env = dict(os.environ)
    if template is not None:
        return env
    probe = [sys.executable, "-c", "import pmaps, sys; sys.stdout.write(pmaps.__file__)"]
    if subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        src = REPO / "src"
        if (src / "pmaps" / "__init__.py").exists():
            # Not installed: run it from the work tree, as `pip install -e .` would.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        res = subprocess.run(probe, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(
                f"bench: pmaps is not importable by {sys.executable}\n"
                f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}\n"
                "install it (pip install -e .) or pass --pmaps CMD"
            )
    return env


def _first_line(path: str) -> str:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return "n/a"


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def environment(env: dict[str, str], template: list[str] | None) -> list[str]:
    try:
        numpy_version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        numpy_version = "not installed"
    if template is None:
        probe = [sys.executable, "-c", "import pmaps; print(getattr(pmaps, '__version__', '?'), pmaps.__file__)"]
        pmaps_line = subprocess.run(probe, env=env, capture_output=True, text=True).stdout.strip()
    else:
        pmaps_line = "--pmaps " + shlex.join(template)
    return [
        f"- kernel: {platform.release()} ({platform.machine()})",
        f"- cores: {os.cpu_count()} (usable {len(os.sched_getaffinity(0))})",
        f"- memory: {_meminfo('MemTotal') / 2**20:.1f} GiB, swap {_meminfo('SwapTotal') / 2**20:.1f} GiB",
        f"- THP: {_first_line('/sys/kernel/mm/transparent_hugepage/enabled')}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- numpy: {numpy_version}",
        f"- pmaps: {pmaps_line}",
    ]


# ---------------------------------------------------------------------------
# main


@dataclass
class Row:
    target: str
    present: int
    label: str
    timing: Timing
    note: str = ""


def fmt_rows(rows: list[Row]) -> Iterator[str]:
    yield "| target | present pages | command | median s | pages/s | peak RSS MB | ratio to cat smaps |"
    yield "|---|---:|---|---:|---:|---:|---:|"
    cats = {r.target: r.timing.median for r in rows if r.label == "cat smaps"}
    for r in rows:
        t = r.timing
        if t.error:
            yield f"| {r.target} | {r.present:,} | {r.label} | FAILED: {t.error} | | | |"
            continue
        ratio = t.median / cats[r.target] if cats.get(r.target) else float("nan")
        label = f"{r.label} ({r.note})" if r.note else r.label
        rss = f"{t.maxrss_kb / 1024:.1f}"
        if t.maxrss_kb <= t.floor_kb * 1.02:
            rss = f"<= {t.floor_kb / 1024:.1f}"  # hidden under the floor inherited from the benchmark
        yield (
            f"| {r.target} | {r.present:,} | {label} | {t.median:.3f} | {r.present / t.median:,.0f} "
            f"| {rss} | {ratio:.2f} |"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4,8", help="GiB sizes of the mixed targets (default 1,4,8)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command, after one warm-up")
    ap.add_argument("--targets", default="mixed,thp8,reserve,vmas",
                    help="which of mixed,thp8,reserve,vmas (65,532 VMAs) to build")
    ap.add_argument("--pmaps", default=None, metavar="CMD", help="command prefix or {pid}/{args} template")
    args = ap.parse_args(argv)
    args.sizes = [float(s) for s in args.sizes.split(",") if s]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - {"mixed", "thp8", "reserve", "vmas"}
    if unknown:
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM tears the targets down the way Ctrl-C does: through the context managers."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    template = shlex.split(args.pmaps) if args.pmaps else None
    env = pmaps_env(template)
    prefix = template or [sys.executable, "-m", "pmaps"]
    signal.signal(signal.SIGTERM, _interrupt)

    print("## Environment\n")
    print("\n".join(environment(env, template)))
    print(flush=True)

    rows: list[Row] = []
    builds: list[str] = []
    reserve_scan_us: float | None = None
    medians: dict[tuple[str, str], float] = {}
    failed = False
    for target in make_targets(args.sizes, args.targets):
        t0 = time.monotonic()
        print(f"building {target.name} ({len(target.specs)} regions)...", file=sys.stderr, flush=True)
        with memchild.MemChild(target.specs, timeout=900) as mc:
            build_s = time.monotonic() - t0
            c = census(mc)
            builds.append(
                f"| {target.name} | {c.vmas} | {c.rss_pages:,} | {c.zero_pages:,} | {c.present:,} "
                f"| {c.anon_huge_pages:,} | {build_s:.1f} |"
            )
            if target.name == "reserve":
                reserve_scan_us = reservation_scan_cost(mc)
            for cmd in commands_for(prefix, mc.pid):
                print(f"  {target.name}: {shlex.join(cmd.argv)}", file=sys.stderr, flush=True)
                timing = measure(cmd, args.runs, env)
                failed |= bool(timing.error)
                rows.append(Row(target.name, c.present, cmd.label, timing, cmd.note))
                medians[target.name, cmd.label] = timing.median

    print("## Targets\n")
    print("| target | VMAs | smaps Rss pages | zero-page pages | present pages | in THPs (pages) | build s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(builds))
    print(f"\n## Results (median of {args.runs} runs after 1 warm-up)\n")
    print("\n".join(fmt_rows(rows)))
    if any(t == "reserve" for t, _ in medians) and any(t == "mixed1" for t, _ in medians):
        print("\n## Cost of a 64 TiB reservation (reserve minus mixed1)\n")
        for label in dict.fromkeys(lbl for t, lbl in medians if t == "reserve"):
            delta = medians["reserve", label] - medians.get(("mixed1", label), float("nan"))
            print(f"- {label}: {delta * 1000:+.1f} ms (whole runs: within their noise)")
    if reserve_scan_us is not None:
        print(f"- measured directly: PAGEMAP_SCAN over the 64 TiB reservation takes {reserve_scan_us:.0f} us "
              "(median of 200, in-process), and pagemap is not read for it at all")
    if "vmas" in args.targets:
        failed |= many_vmas(prefix, args.runs, env)
    startup(prefix, args.runs, env)
    return 1 if failed else 0


MANY_VMAS = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
n = int(sys.argv[1])
a = libc.mmap(None, n * 16384, 3, 0x22, -1, 0)
for i in range(0, n * 16384, 4096):
    ctypes.c_char.from_address(a + i).value = b"x"
for i in range(n):
    libc.mprotect(a + i * 16384, 8192, 1)  # every other 8 KiB read-only: two VMAs per 16 KiB
print("ready", flush=True)
sys.stdin.read()
"""


def many_vmas(prefix: list[str], runs: int, env: dict[str, str], pairs: int = 32_700) -> bool:
    """pmaps on a process of about 65,500 small VMAs (the per-VMA cost), against cat smaps."""
    p = subprocess.Popen([sys.executable, "-c", MANY_VMAS, str(pairs)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    failed = False
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        nvmas = sum(1 for _ in open(f"/proc/{p.pid}/maps"))
        print(f"\n## {nvmas:,} VMAs (median of {runs} runs)\n")
        print("| command | median s | peak RSS MB | ratio to cat smaps |")
        print("|---|---:|---:|---:|")
        cmds = [("cat smaps", ["cat", f"/proc/{p.pid}/smaps"]), ("pmaps", [*prefix, str(p.pid)]),
                ("pmaps --format json", [*prefix, "--format", "json", str(p.pid)]),
                ("pmaps --summary", [*prefix, "--summary", str(p.pid)])]
        base = None
        for label, argv in cmds:
            t = measure(Command(label, argv, ""), runs, env)
            failed |= bool(t.error)
            base = base or t.median
            print(f"| {label} | {t.median:.3f} | {t.maxrss_kb / 1024:.1f} | {t.median / base:.2f} |")
    finally:
        p.kill()
        p.wait()
    return failed


def startup(prefix: list[str], runs: int, env: dict[str, str]) -> None:
    """Start-up alone: the interpreter, and pmaps printing its version."""
    bare = measure(Command("python -c pass", [sys.executable, "-c", "pass"], ""), runs, env).median
    ver = measure(Command("pmaps --version", [*prefix, "--version"], ""), runs, env).median
    legend = measure(Command("pmaps --legend", [*prefix, "--legend"], ""), runs, env).median
    print(f"\n## Start-up alone (median of {runs})\n")
    print(f"- python -c pass: {bare * 1000:.0f} ms; pmaps --version: {ver * 1000:.0f} ms; "
          f"pmaps --legend (imports the show command, numpy): {legend * 1000:.0f} ms")


def reservation_scan_cost(mc: Any, runs: int = 200) -> float | None:
    """Microseconds pmaps spends on the reservation VMA: one PAGEMAP_SCAN over it, which
    finds no page tables. Whole-run medians are too noisy to show a cost this small."""
    try:
        from pmaps.kernel.pagemap import Scanner
    except ImportError:
        return None
    reg = mc.regions["reserve"]
    fd = os.open(f"/proc/{mc.pid}/pagemap", os.O_RDONLY)
    try:
        scanner = Scanner(fd, mc.pid)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            regs = scanner.regions(reg["start"], reg["end"])
            times.append(time.perf_counter() - t)
        assert len(regs) == 0
    finally:
        os.close(fd)
    return statistics.median(times) * 1e6


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the MemChild context managers have already killed the targets
        sys.exit(130)
