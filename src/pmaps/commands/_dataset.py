"""`record --dataset`: samples as rows of a fleet dataset (store/dataset.py, docs/dataset.md).
The same add/finish/manifest interface as store.recorder.Recorder, so record.py only picks one."""
from __future__ import annotations

import argparse
import bisect
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TextIO

from ..analysis.dataset import Identity, concat_rows, range_rows, sample_rows, scan_range_rows, scan_rows
from ..errors import BadSnapshot, PmapsError, UsageError
from ..kernel import identity as kid
from ..kernel.maps import Vma
from ..kernel.status import Ident, read_ident
from ..model import Sample, SystemScan
from ..store.dataset import RANGE_COLUMNS, iso_us, table_bytes
from ..store.dataset_writer import DatasetWriter, signals_held
from ..store.recording import check_sample
from ._common import parse_pid


class Host:
    """This host's identity, read once, and processes' identities on it."""

    def __init__(self) -> None:
        self.name, self.kernel = kid.host_facts()
        self.boot_id = kid.read_boot_id()
        self.btime, self.tick = kid.read_btime(), kid.clock_ticks()

    def identity(self, pid: int, ident: Ident | None = None) -> Identity:
        """NoSuchProcess & co. when the process is gone."""
        ident = ident or read_ident(pid)
        ticks, exe = kid.read_proc(pid)
        return Identity(self.name, self.boot_id, self.kernel, pid, ticks, self.btime + ticks / self.tick, ident.comm,
                        exe, ident.cgroup, ident.uid)


def build_ids_of(pid: int, vmas: list[Vma], cache: dict[str, str | None]) -> None:
    """Fill `cache` with the build-id of every mapped path not seen yet."""
    for v in vmas:
        if v.path and v.path not in cache:
            cache[v.path] = kid.read_build_id_of(pid, v.path)


def check_root(root: str) -> str:
    """A dataset ROOT as typed, refused (UsageError) before anything is read or written when it
    names no place: empty, a bare file:// (the writer would take it for '/', the readers for the
    working directory), an object-store URL without a bucket (s3://: pyarrow would list every
    bucket, or refuse the path '/'). The URL itself is not echoed: its query may hold a secret."""
    if not root:
        raise UsageError("the dataset ROOT is empty: give a directory or a URL (s3://bucket/prefix)")
    if "://" not in root:
        return root
    scheme = root.split("://", 1)[0]
    if scheme == "file":
        if not root[len("file://"):]:
            raise UsageError("file:// names no directory: give file:///path/to/root or a path")
    elif not urllib.parse.urlsplit(root).netloc:
        raise UsageError(f"{scheme[:20]}:// names no bucket: give {scheme[:20]}://bucket/prefix")
    return root


def record_scans(args: argparse.Namespace, err: TextIO, scan: Callable[[], SystemScan]) -> int:
    """`top --dataset ROOT [--interval S]`: one part file per scan of every process and its ranges
    file (built first, its row groups a batch of processes at a time: they count the ranges the
    part file's rows give), published both or neither, until --iterations or a signal. A signal
    is an interruption (exit 130, as docs/formats.md has it): the scans written stay."""
    root = check_root(args.dataset)
    host = Host()
    writer = DatasetWriter(root, host.name)
    cache: dict[str, str | None] = {}
    n = 0
    while True:
        t0 = time.monotonic()
        sc = scan()
        idents = {}
        for p in sc.procs:
            try:
                idents[p.pid] = host.identity(p.pid, p.ident)
            except PmapsError:
                continue  # exited since the scan: its rows would have no start time
            build_ids_of(p.pid, p.vmas, cache)
        t1 = time.monotonic()
        counts: dict[int, int] = {}
        ranges = table_bytes(scan_range_rows(sc, idents, n, counts), RANGE_COLUMNS)  # fills counts
        path, size = writer.put(table_bytes(scan_rows(sc, idents, cache, n, counts)), sc.time, os.getpid(), n, ranges)
        if not args.quiet:
            err.write(f"pmaps: scan {n}: {len(idents)} processes, {sum(counts.values())} ranges, "
                      f"{size} bytes to {path}; scan {t1 - t0:.2f} s, write {time.monotonic() - t1:.2f} s\n")
            err.flush()
        n += 1
        if args.watch is None or (args.iterations and n >= args.iterations):
            return 0
        time.sleep(max(0.0, t0 + args.watch - time.monotonic()))


class DatasetRecorder:
    """Buffers `batch` samples' rows, then writes one part file."""

    def __init__(self, root: str, pid: int, batch: int = 1) -> None:
        self.host = Host()
        self.ident = self.host.identity(pid)
        self.writer = DatasetWriter(check_root(root), self.host.name)
        self.batch = batch
        self.build_ids: dict[str, str | None] = {}
        self.pending: dict[str, list[Any]] = {}
        self.pending_ranges: list[dict[str, Any]] = []
        self.first: Sample | None = None
        self.manifest: dict[str, Any] = {"samples": []}

    def open(self) -> DatasetRecorder:
        return self

    def add(self, s: Sample) -> int:
        """Buffer the sample's rows and ranges; write a part file (and its ranges file) every `batch`
        samples. Returns bytes written. BadSnapshot, nothing kept, when the sample fails the loader's
        checks (a torn maps read), as Recorder.add."""
        try:
            check_sample(s)
        except ValueError as err:
            raise BadSnapshot(f"sample {s.seq} is inconsistent ({err})") from None
        build_ids_of(s.pid, s.vmas, self.build_ids)
        rows = sample_rows(s, self.ident, self.build_ids, ranges=True)
        for k, col in rows.items():
            self.pending.setdefault(k, []).extend(col)
        self.pending_ranges.append(range_rows(s, self.ident))
        self.first = self.first or s
        self.manifest["samples"].append({"seq": s.seq, "time": s.time, "bytes": 0})
        return self.flush() if sum(1 for x in self.manifest["samples"] if not x["bytes"]) >= self.batch else 0

    def flush(self) -> int:
        if self.first is None:
            return 0
        # SIGINT/SIGTERM (record's Interrupted) wait for the bookkeeping too: raised between the
        # write and it, they would have finish() write the same rows again.
        with signals_held():
            ranges = concat_rows(self.pending_ranges)
            _, size = self.writer.write(self.pending, self.first.time, self.first.pid, self.first.seq, ranges)
            mine = [x for x in self.manifest["samples"] if not x["bytes"]]
            for x in mine:
                x["bytes"] = size // len(mine) or 1
            self.pending, self.pending_ranges, self.first = {}, [], None
        return size

    def finish(self, reason: str, note: str = "") -> None:
        """Write what is buffered (a stop mid-batch keeps its samples)."""
        self.flush()
        self.end = {"time": time.time(), "reason": reason, "note": note}


# -- `diff ROOT` and `heatmap ROOT`: one process's samples chosen from a dataset ------------
def parse_time_us(text: str) -> int:
    """A UTC time as typed (ISO 8601, 'T' or space, optional fraction and Z/+00:00) -> microseconds."""
    import datetime as dt

    t = text.strip()
    t = t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError:
        raise UsageError(f"not a sample index nor a time (YYYY-MM-DDTHH:MM:SS[.ffffff]Z): {text[:40]!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    delta = d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


class Selection:
    """One process of a dataset chosen by --host/--pid/--start-ticks, and its reader."""

    def __init__(self, root: str, args: argparse.Namespace) -> None:
        from ..store.dataset import partition_value
        from ..store.dataset_reader import DatasetReader, TooManySamples

        self.root = check_root(root)
        self.reader = DatasetReader(root)
        hosts = self.reader.hosts()
        if not hosts:
            raise UsageError(f"{root}: no hosts in the dataset (ROOT/host=*/date=*/part-*.parquet)")
        if args.host is None:
            if len(hosts) > 1:
                raise UsageError(f"{root} holds {len(hosts)} hosts ({_few(hosts)}): choose one with --host")
            host = hosts[0]
        else:
            host = args.host if args.host in hosts else partition_value(args.host)
            if host not in hosts:
                raise UsageError(f"{root}: no host {args.host[:60]!r} (hosts: {_few(hosts)})")
        pid = parse_pid(args.pid) if args.pid is not None else None
        try:
            procs = self.reader.processes(host, pid, args.start_ticks)
        except TooManySamples as e:
            if pid is None:
                how = "choose one process with --pid (and --start-ticks)"
            elif args.start_ticks is None:
                how = "--start-ticks chooses one process of the PID; the SQL of `pmaps query` reads any number"
            else:
                how = "`pmaps query ROOT SQL` reads any number (docs/dataset.md)"
            raise UsageError(f"{e}: {how}") from None
        what = f"pid {pid}" if pid is not None else "process"
        ticks = f" started at tick {args.start_ticks}" if args.start_ticks is not None else ""
        if not procs:
            raise UsageError(f"{root}: no {what}{ticks} on host {host}")
        if len(procs) > 1:
            names = [f"{p.pid} {p.comm} (start ticks {p.start_ticks}, {len(p.times_us)} samples)" for p in procs]
            how = "--start-ticks" if pid is not None else "--pid"
            raise UsageError(f"{root}: {len(procs)} processes on host {host} ({_few(names, 4)}): choose one with {how}")
        self.host, self.proc = host, procs[0]

    def pick(self, whens: list[str]) -> list[int]:
        """Sample times (us) for --at values: an index (negative from the end) or a time."""
        times = self.proc.times_us
        out = []
        for w in whens:
            w = w.strip()
            if w.lstrip("-").isascii() and w.lstrip("-").isdigit() and len(w) < 12:
                i = int(w)
                if not -len(times) <= i < len(times):
                    raise UsageError(f"--at {w}: the process has {len(times)} samples in {self.root} "
                                     f"(0..{len(times) - 1}, or -1 for the last)")
                out.append(times[i])
                continue
            t = parse_time_us(w)
            k = bisect.bisect_right(times, t) - 1
            if k < 0:
                raise UsageError(f"--at {w}: no sample of pid {self.proc.pid} at or before it (the first is at "
                                 f"{iso_us(times[0])})")
            out.append(times[k])
        return out

    def between(self, since: str | None, until: str | None) -> list[int]:
        lo = parse_time_us(since) if since is not None else None
        hi = parse_time_us(until) if until is not None else None
        out = [t for t in self.proc.times_us if (lo is None or t >= lo) and (hi is None or t <= hi)]
        if not out:
            raise UsageError(f"no sample of pid {self.proc.pid} between {since or 'the start'} and "
                             f"{until or 'the end'} (samples from {iso_us(self.proc.times_us[0])} to "
                             f"{iso_us(self.proc.times_us[-1])})")
        return out

    def load(self, times_us: list[int]) -> list[Sample]:
        """The samples at these times (each once, in the order asked)."""
        p = self.proc
        missing = [t for t in times_us if p.ranges[p.times_us.index(t)] is None]
        if missing:
            raise PmapsError(f"{self.root}: the sample of pid {p.pid} at {iso_us(missing[0])} has no page ranges "
                             "(written before dataset version 2, or its pages did not make a valid sample): "
                             "diff and heatmap need its ranges")
        uniq = sorted(set(times_us))
        got = dict(zip(uniq, self.reader.samples(p, uniq)))
        return [got[t] for t in times_us]

    def label(self, t_us: int) -> str:
        i = self.proc.times_us.index(t_us)
        return f"{self.root} host={self.host} sample {i}"
