#!/usr/bin/env python3
"""Benchmark pmaps against processes with a known memory layout (tests/memchild.py).

    python bench/bench.py [--sizes 1,2,4,8,16] [--runs 7] [--targets mixed,thp,reserve,vmas]
                          [--thp-gib 8] [--vmas 65532] [--no-lean] [--no-startup] [--replay]
                          [--pmaps CMD]

Targets, built one at a time (so at most one is resident) and killed afterwards; a target that
MemAvailable cannot hold (with room for the readers) is skipped unless --force:
  mixedS   S GiB: 60% fully written anon in 256 MiB VMAs, 15% anon written every 16th page,
           15% read-only anon (the shared zero page), 10% MAP_SHARED file fully read (page cache)
  thpS     --thp-gib GiB (8) of MADV_HUGEPAGE anon in 256 MiB VMAs, fully written
  reserve  mixed1 plus a 64 TiB PROT_NONE MAP_NORESERVE reservation
  vmas     --vmas VMAs (65,532, or as many as vm.max_map_count allows): 16 KiB strides of a
           written anon region, half of each read-only (about 520 MiB resident)
Commands on each target, in the same interleaved run (one run of each per round, the order
rotated every round; round 0 is a dropped warm-up): `cat /proc/PID/smaps` (the kernel's own
walk), `pmaps PID`, `pmaps --format json PID`, `pmaps --summary PID`, `pmaps --flags=all PID`
and bench/lean_reader.py (a plain numpy reader written as a reference: pagemap per VMA,
kpageflags and kpagecount per run of PFNs). On the many-VMAs target also the periodic commands:
`pmaps watch --count 1` and `--count 2` (plain frames to /dev/null), `pmaps record --count 1` and
`--count 3` (into a new temporary directory, removed after each run), both at `--interval 0.01`
(each sample starts when the last one is written: watch may still sleep a little, as it stretches
its interval to 1.5x a sample's cost), and `pmaps wss --interval 0.01` (one cycle: two reads of
the pages, and smaps' Referenced with the clear_refs method), and the other commands that read one
live process: `pmaps save`, `explain`, `top -p`, `libs -p`; the marginal cost of one more
sample (count 2 minus count 1; count 3 minus count 1, halved) is shown against cat smaps; and
`pmaps shared PID OTHER` (OTHER a `sleep` started beside the target), `pmaps diff --wait 0 PID`
(two live samples) and `pmaps diff SAVED PID` (the target saved once before the rounds). The
table shows the median and minimum wall time, stdout going to /dev/null, the peak RSS (ru_maxrss
from wait4) and the ratios to cat smaps and to the lean reader in the same run. With --replay, on
the targets other than vmas, also the kernel floor of `pmaps PID` (bench/replay.py: its own
pagemap, kpageflags and kpagecount reads, recorded once with strace, made again by a C program
with no Python, on two threads and on one; the one-thread time is the kernel CPU those reads
cost, which no reader of the same pages can spend less of). Then start-up
alone: `python -c pass`, numpy's import,
`pmaps --version`, `pmaps --legend`. pmaps' modules are byte-compiled first (compileall), as an
installed pmaps has them: with PYTHONDONTWRITEBYTECODE set, each run would otherwise compile
them again (~35 ms).

--pmaps CMD replaces the default `python -m pmaps` prefix.  In CMD, `{pid}` is replaced by the
target's pid and `{args}` by the command's extra arguments (e.g. `--format json`); without
`{pid}` the extra arguments and the pid are appended, and a CMD with `{pid}` but no `{args}`
runs without the extra arguments.  Example, to check the harness itself:
    python bench/bench.py --sizes 1 --runs 3 --targets mixed --pmaps "cat /proc/{pid}/maps"
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

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


def thp_specs(gib: float) -> list[str]:
    return [f"thp{i}:thp:{256 * MIB}" for i in range(int(gib * GIB) // (256 * MIB))]


@dataclass
class Target:
    name: str
    specs: list[str]  # memchild specs; empty for the many-VMAs target
    gib: float  # what it makes resident, for the memory check
    vmas: int = 0  # the many-VMAs target: how many VMAs to reach


def make_targets(sizes: list[float], which: list[str], thp_gib: float, vmas: int) -> list[Target]:
    out: list[Target] = []
    if "mixed" in which:
        out += [Target(f"mixed{s:g}", mixed_specs(s), s) for s in sizes]
    if "thp" in which:
        out.append(Target(f"thp{thp_gib:g}", thp_specs(thp_gib), thp_gib))
    if "reserve" in which:
        out.append(Target("reserve", [*mixed_specs(1), "reserve:reserve:64T"], 1))
    if "vmas" in which:
        out.append(Target("vmas", [], 0.6, vmas))
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


def census(pid: int, regions: dict[str, Any]) -> Census:
    c = Census()
    for vma in memchild.read_smaps(pid).values():
        c.vmas += 1
        c.rss_pages += vma.get("Rss", 0) * 1024 // PAGE
        c.anon_huge_pages += vma.get("AnonHugePages", 0) * 1024 // PAGE
    c.zero_pages = sum(memchild.runs_pages(r["touched"]) for r in regions.values() if r["kind"] == "zero")
    return c


# The many-VMAs target's script (tests/memchild.py: the tests start the same child).
MANY_VMAS = memchild.MANY_VMAS


@contextmanager
def spawn(target: Target) -> Iterator[tuple[int, Census, dict[str, Any]]]:
    """Build the target, yield (pid, census, memchild regions), kill it afterwards."""
    if target.specs:
        with memchild.MemChild(target.specs, timeout=900) as mc:
            yield mc.pid, census(mc.pid, mc.regions), mc.regions
        return
    p = subprocess.Popen([sys.executable, "-c", MANY_VMAS, str(target.vmas)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the many-VMAs target did not start: {line!r}")
        yield p.pid, census(p.pid, {}), {}
    finally:
        p.kill()
        p.wait()


@contextmanager
def beside(prefix: list[str], pid: int, env: dict[str, str], wanted: bool) -> Iterator[dict[str, str]]:
    """What OTHER_VARIANTS name beside the target: {other}, a `sleep` (shares the C library's
    pages with the target), and {saved}, the target saved by `pmaps save` now; both removed
    afterwards. Empty when not wanted; {saved} is missing when the save fails."""
    if not wanted:
        yield {}
        return
    other = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory(prefix="pmaps-bench-") as d:
            fill = {"other": str(other.pid)}
            saved = os.path.join(d, "saved.npz")
            argv, _ = expand(prefix, pid, ["save", "-q", "-o", saved])
            if subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode == 0:
                fill["saved"] = saved
            yield fill
    finally:
        other.kill()
        other.wait()


def memory_shortfall(target: Target) -> str:
    """Why the target should not be built now (not enough available memory), or ''."""
    avail = _meminfo("MemAvailable") * 1024
    need = target.gib * GIB * 1.15 + 1.5 * GIB  # the target, then pmaps' and the reader's own
    if avail < need:
        return f"needs ~{need / GIB:.1f} GiB, MemAvailable is {avail / GIB:.1f} GiB"
    return ""


# ---------------------------------------------------------------------------
# commands


@dataclass
class Command:
    label: str
    argv: list[str]
    note: str = ""


def expand(template: list[str], pid: int, extra: list[str]) -> tuple[list[str], str]:
    """Fill a --pmaps template for one target pid; return (argv, note). Extra arguments that
    name {pid} themselves have it replaced and get no pid appended."""
    if any("{pid}" in tok for tok in extra):
        extra = [tok.replace("{pid}", str(pid)) for tok in extra]
        if not any("{pid}" in tok for tok in template):
            return [*template, *extra], ""
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


PMAPS_VARIANTS: list[tuple[str, list[str]]] = [
    ("pmaps", []),
    ("pmaps --format json", ["--format", "json"]),
    ("pmaps --summary", ["--summary"]),
    ("pmaps --flags=all", ["--flags=all"]),
]
# The periodic commands, on the many-VMAs target: {dir} is a new directory for each run.
PERIODIC_VARIANTS: list[tuple[str, list[str]]] = [
    ("watch --count 1", ["watch", "--count", "1", "--interval", "0.01"]),
    ("watch --count 2", ["watch", "--count", "2", "--interval", "0.01"]),
    ("record --count 1", ["record", "-q", "-o", "{dir}", "--count", "1", "--interval", "0.01"]),
    ("record --count 3", ["record", "-q", "-o", "{dir}", "--count", "3", "--interval", "0.01"]),
    ("wss --interval 0.01", ["wss", "--interval", "0.01"]),
]
# The other commands that read one live process, on the many-VMAs target too ("every command").
# {other} is a small process started beside the target (a `sleep`: the C library's pages in
# common), {saved} a snapshot of the target saved once before the rounds (`pmaps save`); an
# argument list naming {pid} itself gets no pid appended (shared's first PID is the one broken down).
OTHER_VARIANTS: list[tuple[str, list[str]]] = [
    ("save", ["save", "-q", "-o", "{dir}/s.npz"]),
    ("explain", ["explain"]),
    ("top -p", ["top", "-p"]),
    ("libs -p", ["libs", "-p"]),
    ("shared PID OTHER", ["shared", "{pid}", "{other}"]),
    ("diff --wait 0 PID (two samples)", ["diff", "--wait", "0"]),
    ("diff SAVED PID", ["diff", "{saved}"]),
]
# One more sample, as the difference of two commands' medians: (label, more, fewer, samples between).
MARGINAL = [("watch: one more sample and frame", "watch --count 2", "watch --count 1", 1),
            ("record: one more sample written", "record --count 3", "record --count 1", 2)]
LEAN = str(Path(__file__).resolve().parent / "lean_reader.py")


def in_new_dir(argv: list[str]) -> list[str]:
    """argv run by sh with {dir} a new temporary directory, removed afterwards (record wants a
    new or empty one each run); the exit code is argv's."""
    if not any("{dir}" in a for a in argv):
        return argv
    cmd = shlex.join(a.replace("{dir}", "PMAPS_BENCH_DIR") for a in argv).replace("PMAPS_BENCH_DIR", '"$d"')
    return ["sh", "-c", f'd=$(mktemp -d) || exit 1; {cmd}; rc=$?; rm -rf "$d"; exit $rc']


def commands_for(template: list[str], pid: int, lean: bool = True, periodic: bool = False,
                 fill: dict[str, str] | None = None) -> list[Command]:
    """The commands on one target; `fill` gives the {other} and {saved} of OTHER_VARIANTS (those
    naming one it lacks are left out) and the {replay} program and its {ops} (see replayed)."""
    fill = fill or {}
    out = [Command("cat smaps", ["cat", f"/proc/{pid}/smaps"])]
    for label, extra in PMAPS_VARIANTS:
        argv, note = expand(template, pid, extra)
        out.append(Command(label, argv, note))
    if periodic:
        for label, extra in PERIODIC_VARIANTS:
            # The subcommand and its options, then the pid (watch/record/wss take it last or first alike).
            argv, note = expand(template, pid, extra)
            out.append(Command(f"pmaps {label}", in_new_dir(argv), note))
        for label, extra in OTHER_VARIANTS:
            if any(f"{{{k}}}" in a for a in extra for k in ("other", "saved") if k not in fill):
                continue
            extra = [a.replace("{other}", fill.get("other", "")).replace("{saved}", fill.get("saved", ""))
                     for a in extra]
            argv, note = expand(template, pid, extra)
            out.append(Command(f"pmaps {label}", in_new_dir(argv), note))
    if lean:
        out.append(Command("lean reader", [sys.executable, LEAN, str(pid)]))
    if "replay" in fill:
        for threads in ("2", "1"):
            out.append(Command(f"C replay, {threads} thread{'s' if threads == '2' else ''}",
                               [fill["replay"], str(pid), fill["ops"], threads]))
    return out


@contextmanager
def replayed(prefix: list[str], pid: int, env: dict[str, str], wanted: bool) -> Iterator[dict[str, str]]:
    """{replay, ops}: bench/replay.c built and `pmaps PID`'s reads of this target recorded (once,
    under strace), in a temporary directory removed afterwards; {} when not wanted."""
    if not wanted:
        yield {}
        return
    import replay  # bench/replay.py, beside this script (sys.path[0])

    with tempfile.TemporaryDirectory(prefix="pmaps-bench-") as d:
        exe = replay.build(Path(d) / "replay")
        argv, _ = expand(prefix, pid, [])
        n = replay.record(argv, pid, env, Path(d) / "ops")
        print(f"  recorded {n:,} reads of `pmaps PID` for the C replay", file=sys.stderr, flush=True)
        yield {"replay": str(exe), "ops": str(Path(d) / "ops")}


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    maxrss_kb: int = 0
    floor_kb: int = 0  # what ru_maxrss says for `true`: readings at or below it mean "at most this"
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


# The measured commands are spawned by this small process, started before the benchmark grows:
# a process's ru_maxrss survives execve, so a command spawned (vforked) from the benchmark itself
# would start out with the benchmark's own high-water mark (hundreds of MB after the census of the
# many-VMAs target) and hide its real peak. The launcher's own is about 10 MB.
LAUNCHER = r"""
import json, os, sys, time
for line in sys.stdin:
    argv, env, errpath = json.loads(line)
    null = os.open(os.devnull, os.O_RDWR)
    errfd = os.open(errpath, os.O_WRONLY | os.O_TRUNC)
    acts = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, errfd, 2)]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=acts)
        _, status, ru = os.wait4(pid, 0)
        res = [time.perf_counter() - t0, ru.ru_maxrss, os.waitstatus_to_exitcode(status)]
    except OSError as e:
        os.write(errfd, str(e).encode())
        res = [0.0, 0, 127]
    os.close(null)
    os.close(errfd)
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
"""


class Launcher:
    """Runs commands for the benchmark: see LAUNCHER."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        fd, self.errpath = tempfile.mkstemp(prefix="pmaps-bench-err-")
        os.close(fd)

    def run(self, argv: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([argv, env, self.errpath]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the launcher died")
        wall, rss, rc = json.loads(line)
        with open(self.errpath, "rb") as f:
            tail = f.read()[-600:].decode(errors="replace").strip()
        return wall, rss, rc, tail

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.unlink(self.errpath)


_launcher: Launcher | None = None


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """Run argv with stdout to /dev/null; return (wall s, ru_maxrss kB, exit code, stderr tail)."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
    return _launcher.run(argv, env)


def rss_floor(env: dict[str, str]) -> int:
    """ru_maxrss of `true` spawned like the measured commands: the launcher's high-water mark,
    which every command starts out with; readings at or below it are reported as "<= floor"."""
    return run_once(["true"], env)[1]


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


def compile_pmaps(env: dict[str, str]) -> None:
    """Byte-compile the pmaps the commands import, as an installed one is: with
    PYTHONDONTWRITEBYTECODE set (or a read-only tree) each run would compile it again."""
    probe = [sys.executable, "-c", "import os, pmaps; print(os.path.dirname(pmaps.__file__))"]
    pkg = subprocess.run(probe, env=env, capture_output=True, text=True).stdout.strip()
    if pkg:
        compileall.compile_dir(pkg, quiet=1)


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


def interleaved(cmds: list[Command], runs: int, env: dict[str, str]) -> list[Timing]:
    """Round-robin: one run of each command per round, the order rotated each round so that no
    command always follows the same one; round 0 warms caches (imports, page tables) and is dropped.
    A command that fails is not run again."""
    floor = rss_floor(env)
    timings = [Timing(floor_kb=floor) for _ in cmds]
    for rnd in range(runs + 1):
        for k in range(len(cmds)):
            i = (k + rnd) % len(cmds)
            t = timings[i]
            if t.error:
                continue
            sec, rss, rc, tail = run_once(cmds[i].argv, env)
            if rc != 0:
                t.error = f"exit {rc}: {tail.splitlines()[-1] if tail else ''}"
                continue
            if rnd:
                t.seconds.append(sec)
                t.maxrss_kb = max(t.maxrss_kb, rss)
    return timings


@dataclass
class Row:
    target: str
    present: int
    label: str
    timing: Timing
    note: str = ""


def fmt_rss(t: Timing) -> str:
    if t.maxrss_kb <= t.floor_kb * 1.02:
        return f"<= {t.floor_kb / 1024:.1f}"  # hidden under the floor inherited from the benchmark
    return f"{t.maxrss_kb / 1024:.1f}"


def fmt_rows(rows: list[Row]) -> Iterator[str]:
    yield ("| target | present pages | command | median s | min s | pages/s | peak RSS MB | x cat smaps "
           "| x lean reader |")
    yield "|---|---:|---|---:|---:|---:|---:|---:|---:|"
    cats = {r.target: r.timing.median for r in rows if r.label == "cat smaps"}
    leans = {r.target: r.timing.median for r in rows if r.label == "lean reader"}
    for r in rows:
        t = r.timing
        if t.error:
            yield f"| {r.target} | {r.present:,} | {r.label} | FAILED: {t.error} | | | | | |"
            continue
        ratio = t.median / cats[r.target] if cats.get(r.target) else float("nan")
        lean = t.median / leans[r.target] if leans.get(r.target) else float("nan")
        label = f"{r.label} ({r.note})" if r.note else r.label
        yield (
            f"| {r.target} | {r.present:,} | {label} | {t.median:.3f} | {min(t.seconds):.3f} "
            f"| {r.present / t.median:,.0f} | {fmt_rss(t)} | {ratio:.2f} | {lean:.2f} |"
        )


TARGETS = ("mixed", "thp", "reserve", "vmas")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,2,4,8,16", help="GiB sizes of the mixed targets (default 1,2,4,8,16)")
    ap.add_argument("--runs", type=int, default=7, help="timed rounds, after one warm-up round (default 7)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="which of mixed,thp,reserve,vmas to build (default all)")
    ap.add_argument("--thp-gib", type=float, default=8, help="size of the THP target (default 8)")
    ap.add_argument("--vmas", type=int, default=65_532,
                    help="VMAs of the vmas target (default 65,532; vm.max_map_count caps it)")
    ap.add_argument("--no-lean", action="store_true", help="leave out the lean reference reader")
    ap.add_argument("--no-startup", action="store_true", help="leave out the start-up figures")
    ap.add_argument("--replay", action="store_true",
                    help="add the C replay of pmaps' own kernel reads (needs strace and gcc; not on vmas)")
    ap.add_argument("--force", action="store_true", help="build targets even when MemAvailable looks too small")
    ap.add_argument("--pmaps", default=None, metavar="CMD", help="command prefix or {pid}/{args} template")
    args = ap.parse_args(argv)
    args.sizes = [float(s) for s in args.sizes.split(",") if s]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.targets = ["thp" if t.startswith("thp") else t for t in args.targets]  # thp8 as before
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM tears the targets down the way Ctrl-C does: through the context managers."""
    raise KeyboardInterrupt


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    global _launcher
    args = parse_args(argv)
    _launcher = Launcher()  # before this process grows (see LAUNCHER)
    try:
        return _main(args)
    finally:
        _launcher.close()


def _main(args: argparse.Namespace) -> int:
    template = shlex.split(args.pmaps) if args.pmaps else None
    env = pmaps_env(template)
    if template is None:
        compile_pmaps(env)
    prefix = template or [sys.executable, "-m", "pmaps"]
    signal.signal(signal.SIGTERM, _interrupt)

    print("## Environment\n")
    print("\n".join(environment(env, template)))
    print(f"- load average at start: {_load()}")
    print(flush=True)

    rows: list[Row] = []
    builds: list[str] = []
    skipped: list[str] = []
    reserve_scan_us: float | None = None
    medians: dict[tuple[str, str], float] = {}
    failed = False
    for target in make_targets(args.sizes, args.targets, args.thp_gib, args.vmas):
        why = "" if args.force else memory_shortfall(target)
        if why:
            skipped.append(f"- {target.name}: skipped, {why} (--force builds it anyway)")
            print(f"skipping {target.name}: {why}", file=sys.stderr, flush=True)
            continue
        t0 = time.monotonic()
        print(f"building {target.name}...", file=sys.stderr, flush=True)
        with spawn(target) as (pid, c, regions):
            build_s = time.monotonic() - t0
            builds.append(
                f"| {target.name} | {c.vmas:,} | {c.rss_pages:,} | {c.zero_pages:,} | {c.present:,} "
                f"| {c.anon_huge_pages:,} | {build_s:.1f} | {_load()} |"
            )
            if "reserve" in regions:
                reserve_scan_us = reservation_scan_cost(pid, regions["reserve"])
            with beside(prefix, pid, env, target.vmas > 0) as fill, \
                    replayed(prefix, pid, env, args.replay and target.vmas == 0) as replay_fill:
                fill = {**fill, **replay_fill}
                cmds = commands_for(prefix, pid, lean=not args.no_lean, periodic=target.vmas > 0, fill=fill)
                print(f"  {target.name}: {len(cmds)} commands x {args.runs + 1} rounds, interleaved",
                      file=sys.stderr, flush=True)
                for cmd, timing in zip(cmds, interleaved(cmds, args.runs, env)):
                    failed |= bool(timing.error)
                    rows.append(Row(target.name, c.present, cmd.label, timing, cmd.note))
                    medians[target.name, cmd.label] = timing.median

    print("## Targets\n")
    print("| target | VMAs | smaps Rss pages | zero-page pages | present pages | in THPs (pages) | build s "
          "| load before |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(builds))
    if skipped:
        print("\n" + "\n".join(skipped))
    print(f"\n## Results (median of {args.runs} interleaved rounds after 1 warm-up round)\n")
    print("\n".join(fmt_rows(rows)))
    print("\npeak RSS: ru_maxrss of the command (wait4); `<= N` means below what a spawned `true` reads "
          "(the high-water mark of the small launcher that spawns the commands, which ru_maxrss keeps across exec)")
    marginal = [(t, *m) for t in dict.fromkeys(t for t, _ in medians) for m in MARGINAL
                if (t, f"pmaps {m[1]}") in medians and (t, f"pmaps {m[2]}") in medians]
    if marginal:
        print("\n## One more sample (difference of the medians above)\n")
        print("| target | what | seconds | x cat smaps |")
        print("|---|---|---:|---:|")
        for t, label, more, fewer, n in marginal:
            sec = (medians[t, f"pmaps {more}"] - medians[t, f"pmaps {fewer}"]) / n
            print(f"| {t} | {label} | {sec:.3f} | {sec / medians[t, 'cat smaps']:.2f} |")
    floors = [t for t in dict.fromkeys(t for t, _ in medians) if (t, "C replay, 1 thread") in medians]
    if floors:
        print("\n## The kernel floor of `pmaps PID` (its own reads replayed in C)\n")
        print("| target | cat smaps s | C replay, 2 threads s (x cat) | 1 thread s (x cat) | pmaps s (x cat) "
              "| (1 thread + numpy import) / 2 CPUs, x cat |")
        print("|---|---:|---:|---:|---:|---:|")
        numpy_s = _numpy_import(env)
        for t in floors:
            cat, two, one = medians[t, "cat smaps"], medians[t, "C replay, 2 threads"], medians[t, "C replay, 1 thread"]
            pm = medians.get((t, "pmaps"), float("nan"))
            print(f"| {t} | {cat:.3f} | {two:.3f} ({two / cat:.2f}) | {one:.3f} ({one / cat:.2f}) "
                  f"| {pm:.3f} ({pm / cat:.2f}) | {(one + numpy_s) / 2 / cat:.2f} |")
        print(f"\n- numpy's import (`python -c 'import numpy'`, median of 9 here after the rounds): {numpy_s:.3f} s. "
              "The last column is a lower bound for any Python reader with numpy on 2 CPUs that makes "
              "the same reads: all of their kernel CPU and the interpreter's start shared perfectly "
              "between the two, and no other work at all.")
    if any(t == "reserve" for t, _ in medians) and any(t == "mixed1" for t, _ in medians):
        print("\n## Cost of a 64 TiB reservation (reserve minus mixed1)\n")
        for label in dict.fromkeys(lbl for t, lbl in medians if t == "reserve"):
            delta = medians["reserve", label] - medians.get(("mixed1", label), float("nan"))
            print(f"- {label}: {delta * 1000:+.1f} ms (whole runs, as noisy as the min-median spread above)")
        print("- the lean reader skips VMAs without read permission, the reservation among them")
    if reserve_scan_us is not None:
        print(f"- measured directly: PAGEMAP_SCAN over the 64 TiB reservation takes {reserve_scan_us:.0f} us "
              "(median of 200, in-process), and pagemap is not read for it at all")
    if not args.no_startup:
        startup(prefix, args.runs, env)
    print(f"\n- load average at the end: {_load()}")
    return 1 if failed else 0


def _numpy_import(env: dict[str, str], runs: int = 9) -> float:
    """Median wall seconds of `python -c 'import numpy'` (the interpreter's start included)."""
    return statistics.median(run_once([sys.executable, "-c", "import numpy"], env)[0] for _ in range(runs))


def startup(prefix: list[str], runs: int, env: dict[str, str]) -> None:
    """Start-up alone, interleaved: the interpreter, numpy's import, pmaps without and with numpy."""
    cmds = [Command("python -c pass", [sys.executable, "-c", "pass"]),
            Command("python -c 'import numpy'", [sys.executable, "-c", "import numpy"]),
            Command("pmaps --version", [*prefix, "--version"]),
            Command("pmaps --legend (the show command)", [*prefix, "--legend"])]
    print(f"\n## Start-up alone (median of {runs} interleaved rounds)\n")
    print("| command | median ms | peak RSS MB |")
    print("|---|---:|---:|")
    for cmd, t in zip(cmds, interleaved(cmds, runs, env)):
        shown = f"FAILED: {t.error}" if t.error else f"{t.median * 1000:.0f}"
        print(f"| {cmd.label} | {shown} | {fmt_rss(t)} |")


def reservation_scan_cost(pid: int, reg: dict[str, Any], runs: int = 200) -> float | None:
    """Microseconds pmaps spends on the reservation VMA: one PAGEMAP_SCAN over it, which
    finds no page tables. Whole-run medians are too noisy to show a cost this small."""
    try:
        from pmaps.kernel.pagemap import Scanner
    except ImportError:
        return None
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        scanner = Scanner(fd, pid)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            regs = scanner.regions(reg["start"], reg["end"])
            times.append(time.perf_counter() - t)
        assert len(regs) == 0
    except OSError:  # no PAGEMAP_SCAN (Linux < 6.7)
        return None
    finally:
        os.close(fd)
    return statistics.median(times) * 1e6


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the MemChild context managers have already killed the targets
        sys.exit(130)
