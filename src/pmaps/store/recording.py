"""Samples (a process's page ranges at one moment) and recordings (a directory of samples).

A sample stores ranges, not pages: maximal runs of virtually consecutive pages of one VMA with
the same full state word (model/state.py) and map count, so an 8 GiB process of a few states takes a few
kilobytes. On disk a recording is a directory (0700)::

    manifest.json            schema pmaps-recording/1: pid, comm, interval, samples, end note
    sample-000000.parquet    one Parquet file per sample (0600), written temp + fsync + rename

Each sample file is self-describing (its key-value metadata holds the VMAs, pid, time, what is
known), so a reader never needs the manifest: the manifest is rewritten atomically after each
sample and may lag the files by one when the recorder is killed; readers list the files.
The file's key-value metadata "pmaps" is base64(zlib(JSON)) of pid, comm, time, VMAs, known.
Columns: vma_start u64, addr u64 (first byte), count u32 (pages), state u64, mapcount i32 (-1
unknown, 0 swapped), and pfn u64 only when recorded with --pfn.

pyarrow is imported lazily (the `parquet` extra): `pmaps diff` of live PIDs works without it.
"""
from __future__ import annotations

import base64
import json
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadSnapshot, MissingExtra, OutputExists, PmapsError
from ..kernel.maps import PAGE_SHIFT
from ..model import Sample
from .codec import DECODE_ERRORS, decode_known, decode_vmas, encode_known, encode_vmas
from .files import file_errors, save_bytes

SAMPLE_SCHEMA = "pmaps-sample/1"
RECORDING_SCHEMA = "pmaps-recording/1"
MANIFEST = "manifest.json"
META_KEY = "pmaps"  # Parquet key-value metadata: base64 of zlib of the sample's JSON metadata
SAMPLE_RE = re.compile(r"^sample-(\d{6,})\.parquet$")
U64 = np.uint64


# -- Parquet ------------------------------------------------------------------------------
def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("recordings need pyarrow: pip install 'pmaps[parquet]'") from None
    return pa, pq


def sample_meta(s: Sample) -> dict[str, Any]:
    return {
        "schema": SAMPLE_SCHEMA, "pid": s.pid, "comm": s.comm, "time": s.time, "seq": s.seq, "cost": s.cost,
        "exclusive_known": s.exclusive_known,
        "known": encode_known(s.known), "vmas": encode_vmas(s.vmas),
    }


def sample_bytes(s: Sample) -> bytes:
    """The sample as one Parquet file (zstd), metadata in the schema's key-value metadata."""
    pa, pq = _pyarrow()
    starts = s.vma_starts()
    arrays = {
        "vma_start": pa.array(starts[s.vma] if len(s) else np.zeros(0, dtype=U64), pa.uint64()),
        "addr": pa.array(s.vpn << U64(PAGE_SHIFT), pa.uint64()),
        "count": pa.array(s.count.astype(np.uint32), pa.uint32()),
        "state": pa.array(s.state, pa.uint64()),
        "mapcount": pa.array(s.mapcount.astype(np.int32), pa.int32()),
    }
    if s.pfn is not None:
        arrays["pfn"] = pa.array(s.pfn, pa.uint64())
    table = pa.table(arrays)
    sink = pa.BufferOutputStream()
    # store_schema=False: pyarrow would otherwise keep a second, base64 copy of all metadata
    # (ARROW:schema), 8x the data for a small sample. Our metadata: zlib-compressed JSON, base64.
    with pq.ParquetWriter(sink, table.schema, compression="zstd", store_schema=False) as w:
        w.write_table(table)
        w.add_key_value_metadata({META_KEY: base64.b64encode(zlib.compress(json.dumps(sample_meta(s)).encode(), 9))})
    return sink.getvalue().to_pybytes()


def load_sample(path: str | os.PathLike[str]) -> Sample:
    """Read one sample file; BadSnapshot (one clear line) on a corrupt or truncated file."""
    pa, pq = _pyarrow()
    name = str(path)
    try:
        with file_errors(name):
            table = pq.read_table(name)
            raw = (table.schema.metadata or {}).get(META_KEY.encode())
            meta = json.loads(zlib.decompress(base64.b64decode(raw))) if raw else None
    except (pa.ArrowException, ValueError, zlib.error) as err:
        raise BadSnapshot(f"{name}: not a pmaps sample (corrupt or truncated Parquet)", path=name) from err
    if not isinstance(meta, dict) or meta.get("schema") != SAMPLE_SCHEMA:
        schema = meta.get("schema") if isinstance(meta, dict) else None
        raise BadSnapshot(f"{name}: not a pmaps sample (schema {schema!r})",
                          path=name)
    try:
        vmas = decode_vmas(meta["vmas"])
        for c in table.column_names:
            t = table.column(c).type
            if table.column(c).null_count or not (pa.types.is_integer(t)):
                raise ValueError(f"column {c} holds {t}{' with nulls' if table.column(c).null_count else ''}")
        col = {c: table.column(c).to_numpy() for c in table.column_names}
        starts = np.array([v.start for v in vmas], dtype=U64)
        ends = np.array([v.end for v in vmas], dtype=U64)
        vs = col["vma_start"].astype(U64)
        vma = np.searchsorted(starts, vs).astype(np.int32)
        if len(vs) and (vma.max() >= len(vmas) or not (starts[np.minimum(vma, len(vmas) - 1)] == vs).all()):
            raise ValueError("a range names a VMA the sample does not list")
        vpn = col["addr"].astype(U64) >> U64(PAGE_SHIFT)
        count = col["count"].astype(np.int64)
        if len(vpn) and ((count <= 0).any() or (vpn < starts[vma] >> U64(PAGE_SHIFT)).any()
                         or (vpn + count.astype(U64) > ends[vma] >> U64(PAGE_SHIFT)).any()):
            raise ValueError("a range is empty or lies outside its VMA")
        if len(vpn) > 1 and not (vpn[1:] >= vpn[:-1] + count[:-1].astype(U64)).all():
            raise ValueError("ranges overlap or are out of address order")
        known = decode_known(meta["known"])
        return Sample(int(meta["pid"]), str(meta["comm"]), vmas, known, vma, vpn, count,
                      col["state"].astype(U64), col["mapcount"].astype(np.int64),
                      col["pfn"].astype(U64) if "pfn" in col else None, float(meta["time"]), int(meta["seq"]),
                      float(meta.get("cost", 0.0)), bool(meta.get("exclusive_known", True)))
    except DECODE_ERRORS as err:
        raise BadSnapshot(f"{name}: corrupt pmaps sample ({err})", path=name) from err


# -- recordings ---------------------------------------------------------------------------
def sample_name(seq: int) -> str:
    return f"sample-{seq:06d}.parquet"


@dataclass
class Recorder:
    """Writes a recording directory: each sample and then the manifest, each atomically."""

    path: Path
    pid: int
    comm: str
    interval: float
    with_pfn: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Recorder:
        """Create the directory (0700), or take an existing empty one (made 0700 too).

        A directory with anything in it is refused: `-o .` or `-o /tmp` must not chmod a
        directory that others use, nor mix a recording with other files.
        """
        try:
            self.path.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            if not self.path.is_dir():
                raise PmapsError(f"cannot create {self.path}: it exists and is not a directory",
                                 path=str(self.path)) from None
            try:
                names = [p.name for p in self.path.iterdir()]
            except OSError as err:
                raise PmapsError(f"cannot read {self.path}: {err.strerror}", path=str(self.path)) from err
            if any(SAMPLE_RE.match(n) for n in names):
                raise OutputExists(f"{self.path} already holds a recording: choose a new directory") from None
            if names:
                raise OutputExists(f"{self.path} is not empty: choose a new or empty directory") from None
        except OSError as err:
            raise PmapsError(f"cannot create {self.path}: {err.strerror}", path=str(self.path)) from err
        try:
            os.chmod(self.path, 0o700)
        except OSError as err:
            raise PmapsError(f"cannot use {self.path}: {err.strerror}", path=str(self.path)) from err
        self.manifest = {"schema": RECORDING_SCHEMA, "pid": self.pid, "comm": self.comm, "interval": self.interval,
                         "pfn": self.with_pfn, "started": time.time(), "samples": [], "end": None}
        self._write_manifest()
        return self

    def add(self, s: Sample) -> int:
        """Write one sample file, then the manifest; returns the sample's size in bytes."""
        data = sample_bytes(s)
        name = sample_name(s.seq)
        self._write(self.path / name, data)
        self.manifest["samples"].append({"file": name, "seq": s.seq, "time": s.time, "ranges": len(s),
                                         "bytes": len(data), "ms": round(s.cost * 1000, 2)})
        self._write_manifest()
        return len(data)

    def finish(self, reason: str, note: str = "") -> None:
        self.manifest["end"] = {"time": time.time(), "reason": reason, "note": note}
        self._write_manifest()

    def _write_manifest(self) -> None:
        self._write(self.path / MANIFEST, (json.dumps(self.manifest, indent=1) + "\n").encode())

    def _write(self, path: Path, data: bytes) -> None:
        save_bytes(path, data)


def sample_files(path: str | os.PathLike[str]) -> list[Path]:
    """A recording's sample files in order, from the directory itself (the manifest may lag)."""
    d = Path(path)
    try:
        files = sorted((int(m.group(1)), d / p.name) for p in d.iterdir() if (m := SAMPLE_RE.match(p.name)))
    except OSError as err:
        raise PmapsError(f"cannot read {d}: {err.strerror}", path=str(d)) from err
    if not files:
        raise BadSnapshot(f"{d}: not a pmaps recording (no sample files)", path=str(d))
    return [f for _, f in files]


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest, or {} when missing or unreadable (samples stay readable without it)."""
    try:
        m = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}
