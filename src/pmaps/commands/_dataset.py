"""`record --dataset`: samples as rows of a fleet dataset (store/dataset.py, docs/dataset.md).
The same add/finish/manifest interface as store.recording.Recorder, so record.py only picks one."""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..analysis.dataset import Identity, sample_rows, scan_rows
from ..errors import PmapsError
from ..kernel import identity as kid
from ..kernel.maps import Vma
from ..kernel.status import Ident, read_ident
from ..model import Sample, SystemScan
from ..store.dataset import DatasetWriter


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


def record_scans(args: argparse.Namespace, err: TextIO, scan: Callable[[], SystemScan]) -> int:
    """`top --dataset ROOT [--interval S]`: one part file per scan of every process, until --iterations
    or a signal."""
    host = Host()
    writer = DatasetWriter(args.dataset, host.name)
    cache: dict[str, str | None] = {}
    n = 0
    try:
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
            path, size = writer.write(scan_rows(sc, idents, cache, n), sc.time, os.getpid(), n)
            if not args.quiet:
                err.write(f"pmaps: scan {n}: {len(idents)} processes, {size} bytes to {path}\n")
                err.flush()
            n += 1
            if args.watch is None or (args.iterations and n >= args.iterations):
                break
            time.sleep(max(0.0, t0 + args.watch - time.monotonic()))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a recording: what is written stays
    return 0


class DatasetRecorder:
    """Buffers `batch` samples' rows, then writes one part file."""

    def __init__(self, root: str, pid: int, batch: int = 1) -> None:
        self.host = Host()
        self.ident = self.host.identity(pid)
        self.writer = DatasetWriter(root, self.host.name)
        self.batch = batch
        self.build_ids: dict[str, str | None] = {}
        self.pending: dict[str, list[Any]] = {}
        self.first: Sample | None = None
        self.manifest: dict[str, Any] = {"samples": []}

    def open(self) -> DatasetRecorder:
        return self

    def add(self, s: Sample) -> int:
        """Buffer the sample's rows; write a part file every `batch` samples. Returns bytes written."""
        build_ids_of(s.pid, s.vmas, self.build_ids)
        rows = sample_rows(s, self.ident, self.build_ids)
        for k, col in rows.items():
            self.pending.setdefault(k, []).extend(col)
        self.first = self.first or s
        self.manifest["samples"].append({"seq": s.seq, "time": s.time, "bytes": 0})
        return self.flush() if sum(1 for x in self.manifest["samples"] if not x["bytes"]) >= self.batch else 0

    def flush(self) -> int:
        if self.first is None:
            return 0
        _, size = self.writer.write(self.pending, self.first.time, self.first.pid, self.first.seq)
        mine = [x for x in self.manifest["samples"] if not x["bytes"]]
        for x in mine:
            x["bytes"] = size // len(mine) or 1
        self.pending, self.first = {}, None
        return size

    def finish(self, reason: str, note: str = "") -> None:
        """Write what is buffered (a stop mid-batch keeps its samples)."""
        self.flush()
        self.end = {"time": time.time(), "reason": reason, "note": note}
