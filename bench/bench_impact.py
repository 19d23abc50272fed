"""How much pmaps disturbs the process it reads: the target's own mmap/munmap latency while each
reader runs (issue: "gentle on the target"). A C target (bench/impact_target.c, built here with gcc)
writes --gib GiB (8; a fraction such as 0.25 for a smoke run), then a thread pinned to CPU 0 loops
mmap/munmap of 64 KiB, recording every iteration; each reader runs back to back, pinned to the
other CPUs (taskset), for --seconds; p50/p99/p99.9/max of the target's iterations are printed per
phase, idle first.

Phases (--phases picks some, by key, in the order given; the default is all of them):
  idle      nothing runs
  rollup    `cat smaps_rollup`              smaps     `cat smaps`
  pid       `pmaps PID`                     summary   `pmaps --summary PID`
  topp      `pmaps top -p PID`              top       `pmaps top` (every process)
  watch     `pmaps watch PID` at its default interval (1 s)
  raw       a bare back-to-back reader of the whole pagemap, 1 GiB preads (not pmaps)
  The ones that separate causes (each a new Python process, as pmaps is):
  true      /bin/true (fork and exec only)  python    Python imports numpy and exits, no target
  version   `pmaps --version`               exit      Python writes 256 MiB of its own and exits
  maps      reads /proc/PID/maps only       scan      pmaps' PAGEMAP_SCAN of the target only
  pagemap   pmaps' pagemap reads of the target's VMAs only (no scan, no kpageflags)
  kpage     kpageflags of the target's PFNs only (taken once before the phases)

Per phase, the target's iterations over STALL (1 ms) are listed with their time from the start of
the reader run they fell in (CLOCK_MONOTONIC on both sides) and the run's length: where in a reader's
life the stall came. --trace also records, with ftrace (root, tracefs), the probe thread's
lock:contention_begin/end, its sched_switch/sched_waking and the tasks that ran on the probe's CPU, and
says per stall: how long the probe waited for which lock (mmap_lock: its mm's address), who woke it
while it waited (each up_read of a reader wakes a waiting writer), whether the wait ended with a
reader queueing behind it (the rwsem's handoff after RWSEM_WAIT_TIMEOUT: kernel/locking/rwsem.c), and
what else took the probe's CPU. Root. A script, not a test: timing varies with the machine.

    python bench/bench_impact.py [--gib 8] [--seconds 5] [--phases idle,pid,scan] [--trace]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE_CPU = 0  # impact_target.c pins its loop here
STALL_US = 1000.0  # impact_target.c reports iterations longer than this
SHOW_STALLS = 12  # per phase, the longest ones (traced: at least the 3 longest of each cause)
TRACING = Path("/sys/kernel/tracing")
TRACE_EVENTS = ("lock/contention_begin", "lock/contention_end", "sched/sched_switch", "sched/sched_waking",
                "sched/sched_process_exec")


def phases_for(pid: str, gib: float, seconds: float, tmp: Path) -> dict[str, tuple[str, list[str] | None]]:
    py = [sys.executable, "-m", "pmaps"]
    me = [sys.executable, str(Path(__file__).resolve()), "--reader"]
    watch_samples = max(2, int(seconds) + 1)  # at the default interval (1 s), about the phase's length
    return {
        "idle": ("idle", None),
        "rollup": ("cat smaps_rollup", ["cat", f"/proc/{pid}/smaps_rollup"]),
        "smaps": ("cat smaps", ["cat", f"/proc/{pid}/smaps"]),
        "pid": ("pmaps PID", [*py, pid]),
        "summary": ("pmaps --summary", [*py, "--summary", pid]),
        "topp": ("pmaps top -p PID", [*py, "top", "-p", pid]),
        "top": ("pmaps top", [*py, "top"]),
        "watch": ("pmaps watch (default)", [*py, "watch", pid, "--count", str(watch_samples)]),
        # Not pmaps: a bare reader of the whole pagemap, back to back (the kernel takes and drops the
        # mmap_lock every 2 MiB): how much a stream of short read holds alone costs the target.
        "raw": ("raw pagemap reads", [*me, "raw", pid]),
        "true": ("/bin/true", ["true"]),
        "python": ("python, numpy, exit", [*me, "python", pid]),
        "version": ("pmaps --version", [*py, "--version"]),
        "exit": ("exit of 256 MiB reader", [*me, "exit", pid]),
        "maps": ("maps only", [*me, "maps", pid]),
        "scan": ("PAGEMAP_SCAN only", [*me, "scan", pid]),
        "pagemap": ("pagemap only", [*me, "pagemap", pid]),
        "kpage": ("kpageflags only", [*me, "kpage", pid, str(tmp / "pfns.npy")]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=8.0, help="GiB the target writes (default 8; fractions allowed)")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per phase (default 5)")
    ap.add_argument("--phases", default=None, help="comma-separated phase keys (see above); default all")
    ap.add_argument("--trace", action="store_true", help="ftrace the probe's lock waits and CPU (see above)")
    ap.add_argument("--no-holds", action="store_true", help="skip the PAGEMAP_SCAN call durations at the end")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:VAR=VALUE,...",
                    help="environment for phases written KEY@NAME (e.g. base:PYTHONPATH=/other/src to run "
                         "another checkout's pmaps interleaved with this one's)")
    ap.add_argument("--reader", nargs="+", help=argparse.SUPPRESS)  # internal: one of the separating readers
    a = ap.parse_args()
    if a.reader:
        return reader(*a.reader)
    readers = sorted(os.sched_getaffinity(0) - {PROBE_CPU})
    if PROBE_CPU not in os.sched_getaffinity(0) or not readers:
        sys.exit(f"bench_impact: needs CPU {PROBE_CPU} for the probe and another CPU for the readers")
    cpus = ",".join(map(str, readers))
    tmp = Path(tempfile.mkdtemp(prefix="pmaps-impact-"))
    exe = tmp / "target"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(HERE / "impact_target.c")], check=True)
    t = subprocess.Popen([str(exe), f"{a.gib:g}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert t.stdout is not None and t.stdin is not None
    ready, probe_tid = t.stdout.readline().split()
    assert ready == "ready"
    pid = str(t.pid)
    all_phases = phases_for(pid, a.gib, a.seconds, tmp)
    variants: dict[str, dict[str, str]] = {}
    for v in a.variant:
        vname, _, assigns = v.partition(":")
        variants[vname] = dict(kv.split("=", 1) for kv in assigns.split(",") if kv)
    keys = a.phases.split(",") if a.phases else list(all_phases)
    unknown = [k for k in keys if k.partition("@")[0] not in all_phases or
               (k.partition("@")[2] and k.partition("@")[2] not in variants)]
    if unknown:
        t.kill()
        sys.exit(f"bench_impact: unknown phases {unknown}; known: {','.join(all_phases)}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    if "kpage" in keys:
        save_pfns(int(pid), tmp / "pfns.npy")

    def cmd(c: str) -> list[str]:
        t.stdin.write(c + "\n")  # type: ignore[union-attr]
        t.stdin.flush()  # type: ignore[union-attr]
        out = [t.stdout.readline().strip()]  # type: ignore[union-attr]
        while c == "stalls" and out[-1] != "end":
            out.append(t.stdout.readline().strip())  # type: ignore[union-attr]
        return out[:-1] if c == "stalls" else out

    tracer = Tracer(int(probe_tid)) if a.trace else None
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"# target: {a.gib:g} GiB written, mmap/munmap 64 KiB in a loop on CPU {PROBE_CPU}; readers on CPU "
          f"{cpus}; {a.seconds:g} s per phase; latency of the target's iterations in microseconds; "
          f"load average {load}", flush=True)
    rows: list[str] = []
    details: list[str] = []
    summaries: list[str] = []
    failed = False
    try:
        for key in keys:
            name, argv = all_phases[key.partition("@")[0]]
            phase_env = dict(env, **variants.get(key.partition("@")[2], {}))
            if tracer:
                tracer.start()
            cmd("reset")
            end = time.monotonic() + a.seconds
            runs: list[tuple[float, float]] = []
            pids: list[tuple[int, float]] = []
            while time.monotonic() < end:
                if argv is None:
                    time.sleep(a.seconds)
                    break
                t0 = time.monotonic()
                r = subprocess.Popen(["taskset", "-c", cpus, *argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=phase_env)
                _, err = r.communicate()
                runs.append((t0, time.monotonic()))
                pids.append((r.pid, t0))
                if r.returncode != 0:
                    print(f"# {name}: exit {r.returncode}: {err.decode(errors='replace').strip()[-300:]}")
                    failed = True
                    break
            n, p50, p99, p999, mx = cmd("stats")[0].split()
            stalls = [tuple(map(float, s.split())) for s in cmd("stalls")]
            trace = tracer.stop(tmp / f"trace-{key}.txt", {p for p, _ in pids}) if tracer else None
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            lens = sorted(r1 - r0 for r0, r1 in runs)
            run_ms = f"{lens[len(lens) // 2] * 1e3:.0f}" if lens else "-"
            row = (f"{key:<12} {name:<22} {n:>9} {p50:>7} {p99:>8} {p999:>9} {mx:>9} {len(runs):>5} "
                   f"{run_ms:>7} {sum(s[3] >= 2000 for s in stalls):>5} {load:>5}")
            rows.append(row)
            print(row, flush=True)
            detail, summary = describe(key, stalls, runs, trace)
            details.append(detail)
            summaries.append(summary)
    finally:
        if tracer:
            tracer.close()
        if failed or a.no_holds:
            t.kill()
            t.wait()
    print()
    print(f"{'key':<12} {'phase':<22} {'iters':>9} {'p50':>7} {'p99':>8} {'p99.9':>9} {'max':>9} {'runs':>5} "
          f"{'run ms':>7} {'>2ms':>5} {'load':>5}")
    print("\n".join(rows))
    print("\n".join(d for d in details if d))
    if a.trace:
        print("# stalls over 1 ms by cause (lock: the probe slept on a lock, cpu: others ran on its CPU, "
              "+ours: a reader of the phase woke it or ran there)")
        print("\n".join(s for s in summaries if s))
        print(f"# traces kept in {tmp}")
    if not (failed or a.no_holds):
        try:
            os.sched_setaffinity(0, readers)  # measured where the readers run, off the probe's CPU
            holds(int(pid))
        finally:
            t.kill()
            t.wait()
    return 1 if failed else 0


def describe(key: str, stalls: list[tuple[float, ...]], runs: list[tuple[float, float]],
             trace: Trace | None) -> tuple[str, str]:
    """The phase's longest stalls (traced: and the 3 longest of each cause): when, in which reader
    run, and (traced) why; and, traced, a summary: per cause, how many stalls over 2 ms and the longest."""
    if not stalls:
        return "", ""
    rows = []
    for t0, mm, mu, us in sorted(stalls, key=lambda s: -s[3]):
        at = ""
        for r0, r1 in runs:
            if r0 - 0.001 <= t0 <= r1 + 0.001:
                at = f"at {(t0 - r0) * 1e3:6.1f} / {(r1 - r0) * 1e3:6.1f} ms"
                break
        else:
            if runs and t0 > runs[-1][1]:
                at = f"{(t0 - runs[-1][1]) * 1e3:.1f} ms after the last run"
        cause, why = trace.explain(t0, t0 + us / 1e6) if trace else ("", "")
        rows.append((us, cause, f"  {us:7.0f} us (mmap {mm:.0f}, munmap {mu:.0f}) {at} {cause} {why}"))
    causes: dict[str, list[float]] = {}
    for us, cause, _ in rows:
        causes.setdefault(cause, []).append(us)
    shown: Counter[str] = Counter()
    lines = [f"## {key}: {len(stalls)} iterations over {STALL_US / 1000:g} ms; the longest "
             f"(at: ms from the start of the reader run it fell in / that run's length; * a reader of this phase)"]
    for i, (_, cause, line) in enumerate(rows):
        shown[cause] += 1
        if i < SHOW_STALLS or shown[cause] <= 3:
            lines.append(line)
    summary = ""
    if trace:
        summary = f"{key:<12} {trace.lock_waits()}\n{'':<12} " + ", ".join(
            f"{c}: {sum(u >= 2000 for u in v)} over 2 ms, max {max(v) / 1000:.1f} ms"
            for c, v in sorted(causes.items()))
    return "\n".join(lines), summary


# -- ftrace ------------------------------------------------------------------------------------

LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+): (.*)$")


class Trace:
    """The events of one phase, parsed: (time, cpu, task, pid, event, fields)."""

    def __init__(self, text: str, tid: int, ours: set[int]) -> None:
        self.tid = tid
        self.ours = ours  # the pids of this phase's reader runs (each exec keeps taskset's pid)
        self.ev: list[tuple[float, int, str, int, str, str]] = []
        for ln in text.splitlines():
            m = LINE.match(ln)
            if m:
                self.ev.append((float(m[4]), int(m[3]), m[1].strip(), int(m[2]), m[5], m[6]))
        self.times = [e[0] for e in self.ev]

    def lock_waits(self) -> str:
        """The probe's waits for the target's mmap_lock (the lock of most of its WRITE waits) over the
        phase: asleep (until its last wake-up) plus runnable; and those during which CPU 0 ran nothing
        else (under 10% of the wait): the lock alone, without the machine's other load."""
        addrs = Counter(f.split()[0] for _, _, _, pid, name, f in self.ev
                        if pid == self.tid and name == "contention_begin" and "WRITE" in f)
        if not addrs:
            return "no waits"
        lock = addrs.most_common(1)[0][0]
        every: list[float] = []
        free: list[float] = []
        begin = since = 0.0
        waiting = False
        busy = 0.0
        oncpu = 0
        handoffs = 0
        for ts, cpu, _, pid, name, f in self.ev:
            if name == "sched_switch" and cpu == PROBE_CPU:
                if waiting and oncpu not in (0, self.tid):
                    busy += ts - max(since, begin)
                m = re.search(r"next_pid=(\d+)", f)
                oncpu, since = (int(m[1]) if m else 0), ts
            elif pid == self.tid and name == "contention_begin" and f.startswith(lock):
                begin = ts
                waiting, busy = True, 0.0
            elif name == "contention_begin" and waiting and pid != self.tid and f.startswith(lock) and "READ" in f:
                handoffs += 1  # a reader queued behind the waiting probe: the rwsem's handoff
            elif pid == self.tid and name == "contention_end" and waiting:
                waiting = False
                every.append(ts - begin)
                if busy < 0.1 * (ts - begin):
                    free.append(ts - begin)

        def q(xs: list[float]) -> str:
            xs = sorted(xs)
            if not xs:
                return "none"
            at = lambda f: xs[int((len(xs) - 1) * f)] * 1e3
            return (f"{len(xs)}, p50 {at(0.5):.2f} p99 {at(0.99):.2f} max {at(1):.2f} ms, "
                    f"{sum(x > 1e-3 for x in xs)} over 1 ms")
        return f"mmap_lock waits: all {q(every)}, {handoffs} handoffs | CPU{PROBE_CPU} free {q(free)}"

    def _who(self, task: str, pid: int) -> str:
        return f"{task}-{pid}{'*' if pid in self.ours else ''}"

    def explain(self, t0: float, t1: float) -> tuple[str, str]:
        """Why the probe's iteration [t0, t1] was slow, from the events inside it: (cause, text).
        cause: "lock" (the probe slept on a lock), "cpu" (others ran on its CPU), "?" (neither: the
        host took the vCPU, or an event was missed); "+ours" when the waker or the CPU's other user was
        one of this phase's reader runs, "+other" when not."""
        import bisect
        lo = bisect.bisect_left(self.times, t0 - 0.0002)
        hi = bisect.bisect_right(self.times, t1 + 0.0002)
        waits: list[tuple[float, str]] = []
        wakers: Counter[str] = Counter()
        others: Counter[str] = Counter()
        begin: tuple[float, str, str] | None = None
        woke = t0
        handoff = ""
        oncpu: tuple[str, int] | None = None  # who has the probe's CPU since the last switch
        since = t0
        for ts, cpu, task, pid, name, f in self.ev[lo:hi]:
            if pid == self.tid and name == "contention_begin":
                begin = (ts, f.split()[0], f[f.find("flags=") + 6:].rstrip(")"))
                woke = ts
            elif pid == self.tid and name == "contention_end" and begin:
                # Asleep on the lock until the last wake-up; from there on runnable, waiting for its CPU.
                if woke - begin[0] >= 50e-6:
                    waits.append((woke - begin[0], f"{(woke - begin[0]) * 1e3:.2f} ms {begin[2]} on {begin[1]}"
                                  f" (+{(ts - woke) * 1e3:.2f} ms woken, for the CPU)"))
                begin = None
            elif name == "contention_begin" and begin and f.split()[0] == begin[1] and "READ" in f:
                handoff = f" | handoff: {self._who(task, pid)} queued READ {(ts - begin[0]) * 1e3:.2f} ms in"
            elif name == "sched_waking" and begin and pid != self.tid:
                wakers[self._who(task, pid)] += 1
                woke = ts
            elif name == "sched_switch" and cpu == PROBE_CPU:
                nxt = re.search(r"next_comm=(.*?) next_pid=(\d+)", f)
                if oncpu and oncpu[1] not in (self.tid, 0):
                    others[self._who(*oncpu)] += int(max(0.0, min(ts, t1) - max(since, t0)) * 1e6)
                if nxt:
                    oncpu = (nxt[1], int(nxt[2]))
                    since = ts
        if oncpu and oncpu[1] not in (self.tid, 0) and since < t1:
            others[self._who(*oncpu)] += int((t1 - max(since, t0)) * 1e6)
        total = t1 - t0
        locked = sum(w for w, _ in waits)
        busy = sum(others.values()) / 1e6
        if locked >= total / 2:
            cause = "lock+" + ("ours" if wakers and all(k.endswith("*") for k in wakers) else "other")
        elif busy >= total / 2:
            top = others.most_common(1)[0][0]
            cause = "cpu+" + ("ours" if top.endswith("*") else "other")
        else:
            cause = "?"
        text = "; ".join(w for _, w in waits) or "no lock wait"
        if wakers:
            text += " | woken by " + ", ".join(f"{k} x{v}" for k, v in wakers.most_common(3))
        text += handoff
        if others:
            text += f" | CPU{PROBE_CPU} ran " + ", ".join(f"{k} {v} us" for k, v in others.most_common(3))
        return cause, text


class Tracer:
    def __init__(self, tid: int) -> None:
        if not (TRACING / "trace").exists():
            subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=True)
        self.tid = tid
        self._w("tracing_on", "0")
        self._w("trace_clock", "mono")  # CLOCK_MONOTONIC, as the target's stall times
        self._w("buffer_size_kb", "32768")
        self._w("options/hash-ptr", "0")
        self._w("events/enable", "0")  # these events only
        for e in TRACE_EVENTS:
            self._w(f"events/{e}/enable", "1")
        # The probe's wake-ups; every CPU's switches (what ran on the probe's CPU, whether a reader was
        # off its CPU holding the lock); every task's lock waits (a reader queueing behind the probe is
        # the handoff).
        self._w("events/sched/sched_waking/filter", f"pid == {tid}")


    def _w(self, f: str, v: str) -> None:
        with open(TRACING / f, "w") as fh:
            fh.write(v)

    def start(self) -> None:
        self._w("trace", "")
        self._w("tracing_on", "1")

    def stop(self, keep: Path, ours: set[int]) -> Trace:
        self._w("tracing_on", "0")
        text = (TRACING / "trace").read_text(errors="replace")
        keep.write_text(text)
        return Trace(text, self.tid, ours)

    def close(self) -> None:
        self._w("tracing_on", "0")
        for e in TRACE_EVENTS:
            self._w(f"events/{e}/enable", "0")
        self._w("events/sched/sched_waking/filter", "0")
        self._w("trace", "")


# -- the readers that separate causes (each run as a process of its own, as pmaps is) ----------

def reader(kind: str, pid_s: str, *rest: str) -> int:
    pid = int(pid_s)
    if kind == "python":
        import numpy  # noqa: F401  what pmaps' start costs without touching the target
        return 0
    if kind == "exit":
        import numpy as np
        np.ones(1 << 25)  # 256 MiB of our own, written, freed at exit (exit_mmap of a big reader)
        return 0
    if kind == "maps":
        with open(f"/proc/{pid}/maps", "rb") as f:
            f.read()
        return 0
    if kind == "raw":
        fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        for line in open(f"/proc/{pid}/maps"):
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            for off in range(a, b, 1 << 30):
                os.pread(fd, (min(b, off + (1 << 30)) - off) // 4096 * 8, off // 4096 * 8)
        return 0
    import numpy as np  # pmaps from the PYTHONPATH the bench gave this phase (a variant's, maybe)

    from pmaps.kernel import procfs
    if kind == "scan":
        from pmaps.kernel.pagemap_scan import SCAN_MAX_PAGES
        from pmaps.kernel.pagemap import PAGES_RETURN_MASK, TASK_SIZE_MAX, Scanner
        fd = procfs.open_pagemap(pid)
        Scanner(fd, pid, returns=PAGES_RETURN_MASK, max_pages=SCAN_MAX_PAGES).regions(0, TASK_SIZE_MAX)
        return 0
    if kind == "pagemap":
        # pmaps' batches (CHUNK_PAGES) over every VMA below the vsyscall page, read as pmaps reads them
        from pmaps.collector.options import CHUNK_PAGES
        from pmaps.kernel.pagemap import TASK_SIZE_MAX, read_runs
        fd = procfs.open_pagemap(pid)
        with open(f"/proc/{pid}/maps") as f:
            vmas = [tuple(int(x, 16) >> 12 for x in ln.split()[0].split("-")) for ln in f]
        for s, e in vmas:
            if e << 12 > TASK_SIZE_MAX:
                continue
            for a in range(s, e, CHUNK_PAGES):
                read_runs(fd, pid, np.array([a], dtype=np.uint64), np.array([min(e, a + CHUNK_PAGES)], dtype=np.uint64))
        return 0
    if kind == "kpage":
        pfn = np.load(rest[0])
        fd = os.open("/proc/kpageflags", os.O_RDONLY)
        brk = np.flatnonzero(np.diff(pfn) != 1) + 1
        starts, ends = np.split(pfn, brk), None
        for run in starts:
            os.pread(fd, len(run) * 8, int(run[0]) * 8)
        del ends
        return 0
    raise SystemExit(f"unknown reader {kind}")


def save_pfns(pid: int, path: Path) -> None:
    """The target's PFNs, sorted, for the kpageflags-only phase (read once, before the phases)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    import numpy as np

    from pmaps.collector.process import Process
    with Process(pid) as p:
        pages = p.pages(lookup=False)
    pfn = np.unique(pages.pm & np.uint64((1 << 55) - 1))
    np.save(path, pfn[pfn != 0])


def holds(pid: int) -> None:
    """The longest a pmaps read holds the target's mmap_lock: each PAGEMAP_SCAN call takes it once
    for its whole walk (fs/proc/task_mmu.c do_pagemap_scan), so a call's duration bounds one hold;
    pagemap reads take it per 2 MiB window (pagemap_read, PAGEMAP_WALK_SIZE)."""
    sys.path.insert(0, str(HERE.parent / "src"))
    from pmaps.kernel.pagemap_scan import SCAN_MAX_PAGES
    from pmaps.kernel import procfs
    from pmaps.kernel.pagemap import PAGES_RETURN_MASK, TASK_SIZE_MAX, Scanner

    fd = procfs.open_pagemap(pid)
    scanner = Scanner(fd, pid, returns=PAGES_RETURN_MASK, max_pages=SCAN_MAX_PAGES)
    times: list[float] = []
    real = scanner._ioctl

    def timed(start: int, end: int) -> tuple[int, int]:
        t0 = time.perf_counter()
        try:
            return real(start, end)
        finally:
            times.append((time.perf_counter() - t0) * 1e6)

    scanner._ioctl = timed  # type: ignore[method-assign]
    for _ in range(20):
        scanner.regions(0, TASK_SIZE_MAX)
    procfs.close(fd)
    times.sort()
    q = lambda f: times[int((len(times) - 1) * f)]
    print(f"# PAGEMAP_SCAN calls of pmaps' reads ({len(times)}, max {SCAN_MAX_PAGES} pages each): duration "
          f"p50 {q(0.5):.0f} us, p99 {q(0.99):.0f} us, max {q(1.0):.0f} us (each bounds one mmap_lock hold)")


if __name__ == "__main__":
    sys.exit(main())
