"""`record --dataset`: samples as rows of a fleet dataset (store/dataset.py, docs/dataset.md).
The same add/finish/manifest interface as store.recording.Recorder, so record.py only picks one."""
from __future__ import annotations

import time
from typing import Any

from ..analysis.dataset import Identity, sample_rows
from ..kernel import identity as kid
from ..kernel.status import read_ident
from ..model import Sample
from ..store.dataset import DatasetWriter


class DatasetRecorder:
    """Buffers `batch` samples' rows, then writes one part file."""

    def __init__(self, root: str, pid: int, batch: int = 1) -> None:
        host, kernel = kid.host_facts()
        ident = read_ident(pid)
        ticks, exe = kid.read_proc(pid)
        start = kid.read_btime() + ticks / kid.clock_ticks()
        self.ident = Identity(host, kid.read_boot_id(), kernel, pid, ticks, start, ident.comm, exe, ident.cgroup,
                              ident.uid)
        self.writer = DatasetWriter(root, host)
        self.batch = batch
        self.build_ids: dict[str, str | None] = {}
        self.pending: dict[str, list[Any]] = {}
        self.first: Sample | None = None
        self.manifest: dict[str, Any] = {"samples": []}

    def open(self) -> DatasetRecorder:
        return self

    def add(self, s: Sample) -> int:
        """Buffer the sample's rows; write a part file every `batch` samples. Returns bytes written."""
        for v in s.vmas:
            if v.path and v.path not in self.build_ids:
                self.build_ids[v.path] = kid.read_build_id_of(s.pid, v.path)
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
