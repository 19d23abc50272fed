"""pmaps record PID -o DIR: samples of a process's page ranges over time, one Parquet file each."""
from __future__ import annotations

import argparse
import contextlib
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..collector.options import FIELDS, Options
from ..errors import BadSnapshot, NoSuchProcess, PidReused, UsageError, ZombieProcess
from ..kernel import procfs
from ..kernel.libc import malloc_arena_max, malloc_trim
from ..safetext import printable
from . import Command, add_cpu_option, budget_interval, positive, seconds
from ._common import parse_pid

# numpy and the layers that use it are imported once the process's maps is being read ahead
# (procfs.read_ahead): the read and the imports overlap.
if TYPE_CHECKING:
    from ..collector import Process
    from ..store.recorder import Recorder
    from ._dataset import DatasetRecorder


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: stop after the sample in hand."""


def _raise(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Record(Command):
    """Record a process's page ranges every --interval into DIR (Parquet per sample, manifest.json).

    Every sample is written atomically (temp file, fsync, rename) and the manifest after it, so a
    recorder killed at any moment leaves every completed sample readable. Files are 0600, DIR 0700;
    PFNs are stored only with --pfn. A target that exits, or whose PID comes to name another
    process (checked by start time at every sample), ends the recording with a note; a sample
    that fails the loader's checks (a torn maps read) is dropped with a note, never stored.
    """

    name = "record"
    order = 30

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID")
        # One destination: --dataset writes instead of -o (both given, one would be silently ignored).
        where = p.add_mutually_exclusive_group()
        where.add_argument("-o", "--output", metavar="DIR", help="recording directory (new or empty)")
        where.add_argument("--dataset", metavar="ROOT", help="append rows to the fleet dataset ROOT instead (a path "
                           "or a pyarrow.fs URL; docs/dataset.md)")
        p.add_argument("--batch", type=positive, default=1, metavar="N", help="with --dataset: N samples per file")
        p.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="seconds between samples (default 1)")
        add_cpu_option(p)
        g = p.add_mutually_exclusive_group()
        g.add_argument("--count", type=positive, metavar="N", help="stop after N samples")
        g.add_argument("--duration", type=seconds, metavar="T", help="stop after T seconds")
        p.add_argument("--fields", choices=FIELDS, default="full",
                       help="full: pagemap+kpageflags+kpagecount; flags: no kpagecount; pagemap: pagemap only "
                            "(cheapest)")
        p.add_argument("--pfn", action="store_true", help="store each range's first PFN (sensitive: off by default)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pid = parse_pid(args.pid)
        if args.output is not None and not args.output:
            raise UsageError("-o needs a directory name")
        if not args.output and not args.dataset:
            raise UsageError("record needs -o DIR or --dataset ROOT")
        if args.batch != 1 and args.output:  # not silently ignored: a recording is a file a sample
            raise UsageError("--batch goes with --dataset (a recording directory has one file per sample)")
        # One malloc arena for the reader threads too: each thread's own arena kept what its
        # batches freed, and the peak of 3 samples of 65,531 VMAs moved between 126 and 165 MB
        # with their timing (119 MB with one arena, and no slower).
        malloc_arena_max(1)
        procfs.read_ahead(pid, "maps")
        if args.dataset:
            from ._dataset import check_root

            check_root(args.dataset)  # a ROOT that names no place: a usage error before any read
        from ..collector import Process
        from ..collector.parallel import reader_threads
        from ..store.recorder import Recorder
        from ..store.recording import require_pyarrow

        with Process(pid, Options.fields(args.fields)) as proc:
            if args.dataset:
                from ._dataset import DatasetRecorder

                rec: Recorder | DatasetRecorder = DatasetRecorder(args.dataset, pid, args.batch)
            else:
                require_pyarrow()  # imported when the first sample is written
                rec = Recorder(Path(str(args.output)), pid, proc.comm, args.interval, args.pfn,
                               system_allocator=True).open()
                if reader_threads() > 1:  # on one CPU a helper thread only takes turns
                    rec.prepare(proc.table)
            old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                reason, note = self._loop(proc, rec, args, err)
            except Interrupted as e:
                reason, note = "interrupted", f"stopped by {e}"
            except BaseException as e:  # a write failed, stderr closed...: say so in the manifest
                with contextlib.suppress(Exception):
                    rec.finish("error", str(e) or type(e).__name__)
                raise
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
            rec.finish(reason, note)
        n = len(rec.manifest["samples"])
        size = sum(s["bytes"] for s in rec.manifest["samples"])
        err.write(printable(f"pmaps: recorded {n} samples of {pid} ({proc.comm}) to {args.dataset or args.output}: "
                            f"{reason}" + (f" ({note})" if note else "") + f"; {size // max(n, 1)} bytes per sample")
                  + "\n")
        return 0

    def _loop(self, proc: Process, rec: Recorder | DatasetRecorder, args: argparse.Namespace,
              err: TextIO) -> tuple[str, str]:
        from ..collector import take_sample

        t0 = start = time.monotonic()
        seq = 0
        while True:
            try:
                s = take_sample(proc, with_pfn=args.pfn, seq=seq)
            except PidReused as e:
                return "replaced", str(e)
            except (NoSuchProcess, ZombieProcess) as e:
                return "exited", str(e)
            try:
                size = rec.add(s)
            except BadSnapshot as e:  # a torn read: never stored, the next tick tries again
                rec.manifest.setdefault("dropped", []).append({"seq": seq, "why": str(e)})
                err.write(f"pmaps: {e}: dropped\n")
                size = -1
            if size >= 0 and not args.quiet:
                err.write(f"pmaps: sample {seq}: {len(s)} ranges, {size} bytes, {s.cost * 1000:.1f} ms\n")
                err.flush()
            cost = s.cost
            seq += 1
            if args.count is not None and seq >= args.count:
                return "count", ""
            # The sample's columns are garbage now: give the heap they leave back before the next
            # sample's reads (glibc keeps it, and each sample would start its peak above it).
            del s
            malloc_trim()
            need = budget_interval(args.interval, cost, args.max_cpu)
            if need > args.interval:  # over the CPU budget: wait out the sample's share, re-anchor the ticks
                if args.duration is not None and time.monotonic() + need - cost - start > args.duration:
                    return "duration", ""
                time.sleep(max(0.0, need - cost))
                t0 = time.monotonic() - seq * args.interval
                continue
            # Ticks are anchored at the start: a slow sample delays the next, never piles them up.
            nxt = t0 + seq * args.interval
            now = time.monotonic()
            if args.duration is not None and nxt - t0 > args.duration:
                return "duration", ""
            if nxt > now:
                time.sleep(nxt - now)
            else:
                t0 = now - seq * args.interval  # behind: restart the clock rather than burst
