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
import contextlib
import importlib.util
import itertools
import json
import os
import re
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadSnapshot, MissingExtra, PmapsError
from ..kernel.maps import PAGE_SHIFT, VmaTable
from ..model import Sample
from .codec import (
    DECODE_ERRORS,
    MAX_META,
    MAX_ROWS,
    MAX_TEXT,
    PID_LIMIT,
    as_float,
    as_int,
    as_str,
    decode_known,
    decode_vma_table,
    encode_known,
    encode_vmas,
    inflate,
    loads_json,
    reason,
    vmas_json,
)
from .files import read_regular

SAMPLE_SCHEMA = "pmaps-sample/1"
RECORDING_SCHEMA = "pmaps-recording/1"
MANIFEST = "manifest.json"
META_KEY = "pmaps"  # Parquet key-value metadata: base64 of zlib of the sample's JSON metadata
SAMPLE_RE = re.compile(r"^sample-(\d{6,})\.parquet$")
U64 = np.uint64
PIPELINE_BYTES = 64 << 10  # a piece of VMAs' JSON this long is deflated on a helper thread


# -- Parquet ------------------------------------------------------------------------------
def _pyarrow() -> Any:
    pa = import_arrow()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("recordings need pyarrow: pip install 'pmaps[parquet]'") from None
    return pa, pq


def import_arrow() -> Any:
    """pyarrow alone: what writing a sample needs (see _parquet_writer)."""
    try:
        import pyarrow as pa
    except ImportError:
        raise MissingExtra("recordings need pyarrow: pip install 'pmaps[parquet]'") from None
    return pa


def _parquet_writer(sink: Any, schema: Any, public: bool = False, **options: Any) -> Any:
    """pyarrow.parquet.ParquetWriter's own writer (pyarrow._parquet.ParquetWriter, given what
    the public class gives it for a stream), without importing pyarrow.parquet: its import of
    pyarrow.fs (ssl, the S3 and Azure modules) took 15-25 ms of a recorder's start. The public
    class where the private one is missing or takes other arguments (a test checks that both
    write the same bytes)."""
    if not public:
        try:
            from pyarrow._parquet import ParquetWriter
        except ImportError:
            pass
        else:
            with contextlib.suppress(TypeError):
                return ParquetWriter(sink, schema, version="2.6", writer_engine_version="V2",
                                     data_page_version="1.0", **options)
    _, pq = _pyarrow()
    return pq.ParquetWriter(sink, schema, **options)


def require_pyarrow() -> None:
    """MissingExtra unless pyarrow can be imported (found, not imported: that takes ~30 ms)."""
    if importlib.util.find_spec("pyarrow") is None:
        raise MissingExtra("recordings need pyarrow: pip install 'pmaps[parquet]'")


def use_system_allocator() -> None:
    """Make pyarrow allocate with malloc, for the rest of the process: its default pool (mimalloc)
    keeps about 30 MB of segments after writing one sample of 65,000 VMAs (10 MB allocated at
    most), and more as samples follow. For a command that owns its process (`pmaps record`): the
    pool is pyarrow's process-wide default, which a library caller keeps as it chose."""
    # The environment variable, read when the pool is first used, is what the Parquet writer
    # follows too (pa.set_memory_pool alone leaves it on mimalloc): set before the import.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    pa = import_arrow()
    pa.set_memory_pool(pa.system_memory_pool())


def sample_meta(s: Sample) -> dict[str, Any]:
    return {
        "schema": SAMPLE_SCHEMA, "pid": s.pid, "comm": s.comm, "time": s.time, "seq": s.seq, "cost": s.cost,
        "exclusive_known": s.exclusive_known,
        "known": encode_known(s.known), "vmas": encode_vmas(s.table),
    }


def sample_json(s: Sample, vmas_json: str | None = None) -> str:
    """json.dumps(sample_meta(s)); `vmas_json`, when given, is json.dumps of the VMAs (the
    recorder reuses it while maps does not change: 65,000 VMAs take ~0.1 s to encode)."""
    if vmas_json is None:
        return json.dumps(sample_meta(s))
    return _meta_head(s) + vmas_json + "}"


def _meta_head(s: Sample) -> str:
    """sample_json(s) up to its VMAs: "vmas" is the last key, they and "}" close the document."""
    head = json.dumps(sample_meta(replace(s, table=VmaTable.of_vmas([]))))
    assert head.endswith('"vmas": []}')
    return head[:-3]


@dataclass(frozen=True)
class PackedVmas:
    """A table's VMAs as the end of every sample's metadata (their JSON and the closing brace),
    deflated once: a recorder whose target keeps its maps compresses only each sample's few
    hundred bytes of head (zlib of 65,000 VMAs' 4 MB of JSON takes ~50 ms)."""

    table: VmaTable
    deflated: bytes  # raw deflate, its last block final
    adler: int  # adler32 of the text alone
    size: int  # bytes of the text

    @classmethod
    def of(cls, table: VmaTable) -> PackedVmas:
        """Encoded and deflated a few thousand VMAs at a time: the text is never held whole.
        Each piece is deflated on a helper thread while the next is encoded (zlib lets go of
        the GIL): 65,531 VMAs' 22 ms of deflate hide behind their ~20 ms of encoding."""
        # Level 4 with Z_FILTERED (lazy matching, which favours the literals of JSON's numbers)
        # is both faster and smaller here than the default level 6: the 4 MB of 65,531 VMAs in
        # 23 ms and 376 KB instead of 51 ms and 412 KB (a small process's: +2%; levels 1-3,
        # 14-19 ms, make it 610 KB).
        c = zlib.compressobj(4, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_FILTERED)
        out: list[bytes] = []
        state = [zlib.adler32(b""), 0]  # adler32 and size of the text so far
        errors: list[BaseException] = []

        def deflate(b: bytes) -> None:
            try:
                state[0], state[1] = zlib.adler32(b, state[0]), state[1] + len(b)
                out.append(c.compress(b))
            except BaseException as e:  # re-raised by the caller's thread
                errors.append(e)

        behind: threading.Thread | None = None
        try:
            for piece in itertools.chain(vmas_json(table), ["}"]):
                b = piece.encode()
                if behind is not None:
                    behind.join()
                    behind = None
                if len(b) < PIPELINE_BYTES:  # a small process's VMAs: no thread
                    deflate(b)
                else:
                    behind = threading.Thread(target=deflate, args=(b,), name="pmaps-deflate", daemon=True)
                    behind.start()
                if errors:
                    break
        finally:
            if behind is not None:
                behind.join()
        if errors:
            raise errors[0]
        out.append(c.flush())
        return cls(table, b"".join(out), state[0], state[1])


def packed_meta(s: Sample, vmas: PackedVmas | None = None) -> bytes:
    """zlib of sample_json(s). With `vmas` (of s.table): one zlib stream made of the head,
    deflated now up to a sync flush (a byte boundary, no final block), then the VMAs' deflate
    stream, which refers to nothing before it, and the adler32 of the whole text."""
    if vmas is None:
        return zlib.compress(sample_json(s).encode())
    head = _meta_head(s).encode()
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, zlib.MAX_WBITS)
    adler = adler32_combine(zlib.adler32(head), vmas.adler, vmas.size)
    return c.compress(head) + c.flush(zlib.Z_SYNC_FLUSH) + vmas.deflated + adler.to_bytes(4, "big")


def adler32_combine(a1: int, a2: int, len2: int) -> int:
    """The adler32 of A + B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    base = 65521
    rem = len2 % base
    s1 = ((a1 & 0xFFFF) + (a2 & 0xFFFF) + base - 1) % base
    s2 = (rem * (a1 & 0xFFFF) + (a1 >> 16) + (a2 >> 16) + base - rem) % base
    return s1 | (s2 << 16)


def sample_bytes(s: Sample, vmas: PackedVmas | None = None, *, public_writer: bool = False) -> bytes:
    """The sample as one Parquet file (zstd), metadata in the schema's key-value metadata."""
    pa = import_arrow()
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
    # zlib level 9 took 0.7 s on the 4 MB of JSON of 65,000 VMAs (and made it 1% bigger); see
    # PackedVmas for the level used, once per maps.
    # Dictionary encoding only for the columns of few distinct values: addresses hardly repeat,
    # and a dictionary of them made a sample of 65,531 VMAs' ranges 470 KB in 12 ms; without
    # it, 156 KB in 6 ms (a small process's samples shrink too).
    w = _parquet_writer(sink, table.schema, public_writer, compression="zstd", store_schema=False,
                        use_dictionary=["count", "state", "mapcount"])
    try:
        w.write_table(table)
        w.add_key_value_metadata({META_KEY: base64.b64encode(packed_meta(s, vmas))})
    finally:
        w.close()
    return sink.getvalue().to_pybytes()


SAMPLE_CAP = 256 << 20  # bytes of one sample file (an 8 GiB process's sample takes ~130 KB)
MANIFEST_CAP = 64 << 20  # bytes of a manifest (~100 bytes a sample: over half a million samples)
COLUMNS = {"vma_start", "addr", "count", "state", "mapcount"}


def check_sample(s: Sample) -> None:
    """ValueError unless the sample is one pmaps can have read: every range non-empty, inside
    the VMA it names, ranges in address order without overlap, figures in range. The recorder
    checks a sample before writing it (a torn maps read can break this), the loader after reading."""
    as_int(s.pid, "pid", 0, PID_LIMIT)
    as_float(s.time, "time")
    as_int(s.seq, "seq", 0, 1 << 40)
    as_float(s.cost, "cost", 0.0, 1e9)
    n = len(s.vpn)
    for name in ("vma", "count", "state", "mapcount"):
        if len(getattr(s, name)) != n:
            raise ValueError(f"column {name} has {len(getattr(s, name))} rows, expected {n}")
    if s.pfn is not None and len(s.pfn) != n:
        raise ValueError("column pfn has the wrong length")
    if not n:
        return
    if (s.vma < 0).any() or (s.vma >= len(s.table)).any():
        raise ValueError("a range names a VMA the sample does not list")
    starts, ends = s.table.start_page, s.table.end_page
    count = s.count.astype(np.int64)
    if (count <= 0).any() or (count > 1 << 40).any():
        raise ValueError("a range is empty or impossibly long")
    vpn = s.vpn.astype(U64)
    if (vpn < starts[s.vma]).any() or (vpn + count.astype(U64) > ends[s.vma]).any():
        raise ValueError("a range lies outside its VMA")
    if n > 1 and not (vpn[1:] >= vpn[:-1] + count[:-1].astype(U64)).all():
        raise ValueError("ranges overlap or are out of address order")
    if (s.mapcount < -1).any() or (s.mapcount > 1 << 31).any():
        raise ValueError("a map count is out of range")


def load_sample(path: str | os.PathLike[str], memo: dict[str, Any] | None = None) -> Sample:
    """Read one sample file; BadSnapshot (one clear line) on a corrupt or truncated file."""
    name = str(path)
    return loads_sample(read_regular(name, SAMPLE_CAP, "pmaps sample"), name, memo)


def loads_sample(data: bytes, name: str = "<bytes>", memo: dict[str, Any] | None = None) -> Sample:
    """A sample from a file's bytes. Parquet is parsed in memory (pyarrow's errors are no
    file errors here); the declared row counts and sizes are checked before any column is
    decoded, and the zlib metadata is inflated with a cap. `memo` (one dict for the samples of
    a recording) keeps the last VMA list decoded: a sample listing the same VMAs (equal JSON
    values, compared in C) takes it instead of decoding and checking 65,000 VMAs again."""
    pa, pq = _pyarrow()
    try:
        try:
            pf = pq.ParquetFile(pa.BufferReader(data))
            md = pf.metadata
            if md.num_rows > MAX_ROWS or md.num_rows < 0:
                raise ValueError(f"{md.num_rows} rows declared")
            for g in range(md.num_row_groups):
                # The row group's total, not each column's: pyarrow 26 aborts the process (an
                # uncaught C++ exception) building a ColumnChunkMetaData from some corrupt
                # footers, where reading the same file raises a clean error.
                rg = md.row_group(g)
                if rg.total_byte_size > 64 * (rg.num_rows + 1) * max(rg.num_columns, 1) + (1 << 20):
                    raise ValueError("a row group declares more data than its rows can hold")
            raw = (pf.schema_arrow.metadata or {}).get(META_KEY.encode())
            if not raw:
                raise ValueError("no pmaps metadata")
            meta = loads_json(inflate(base64.b64decode(raw, validate=True), MAX_META))
            names = set(pf.schema_arrow.names)
            if not COLUMNS <= names or names - COLUMNS - {"pfn"}:
                raise ValueError(f"columns {sorted(names)[:8]}")
            table = pf.read()
        except pa.ArrowException as err:
            raise ValueError(f"not a pmaps sample: corrupt or truncated Parquet ({reason(err)})"
                             ) from err
        if not isinstance(meta, dict) or meta.get("schema") != SAMPLE_SCHEMA:
            schema = meta.get("schema") if isinstance(meta, dict) else None
            raise ValueError(f"not a pmaps sample (schema {str(schema)[:40]!r})")
        raw_vmas = meta["vmas"]
        if memo is not None and memo.get("raw") == raw_vmas:
            vmas = memo["table"]
        else:
            vmas = decode_vma_table(raw_vmas)
            if memo is not None:
                memo.update(raw=raw_vmas, table=vmas)
        starts = vmas.start
        for c in table.column_names:
            t = table.column(c).type
            if table.column(c).null_count or not (pa.types.is_integer(t)):
                raise ValueError(f"column {c} holds {t}{' with nulls' if table.column(c).null_count else ''}")
        col = {c: table.column(c).to_numpy() for c in table.column_names}
        vs = col["vma_start"].astype(U64)
        vma = np.searchsorted(starts, vs).astype(np.int32)
        if len(vs) and (vma.max() >= len(vmas) or not (starts[np.minimum(vma, len(vmas) - 1)] == vs).all()):
            raise ValueError("a range names a VMA the sample does not list")
        ek = meta.get("exclusive_known", True)
        if not isinstance(ek, bool):
            raise ValueError("exclusive_known is not a boolean")
        s = Sample(as_int(meta["pid"], "pid", 0, PID_LIMIT), as_str(meta["comm"], "comm"), vmas,
                   decode_known(meta["known"]), vma, col["addr"].astype(U64) >> U64(PAGE_SHIFT),
                   col["count"].astype(np.int64), col["state"].astype(U64), col["mapcount"].astype(np.int64),
                   col["pfn"].astype(U64) if "pfn" in col else None, as_float(meta["time"], "time"),
                   as_int(meta["seq"], "seq", 0, 1 << 40), as_float(meta.get("cost", 0.0), "cost", 0.0, 1e9), ek)
        check_sample(s)
        return s
    except DECODE_ERRORS as err:
        raise BadSnapshot(f"{name}: corrupt pmaps sample ({reason(err)})", path=name) from err


# -- recordings ---------------------------------------------------------------------------
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
    """The manifest's checked fields, or {} when it is missing, not a regular file or corrupt:
    it is advisory (samples are self-describing), so a damaged one costs a title a detail."""
    try:
        m = loads_json(read_regular(Path(path) / MANIFEST, MANIFEST_CAP, "pmaps manifest"))
    except (PmapsError, ValueError):
        return {}
    return check_manifest(m)


def check_manifest(m: object) -> dict[str, Any]:
    """The fields of a manifest that are what they should be (schema, pid, comm, interval, ...)."""
    if not isinstance(m, dict) or m.get("schema") != RECORDING_SCHEMA:
        return {}
    out: dict[str, Any] = {"schema": RECORDING_SCHEMA}
    checks: dict[str, Any] = {
        "pid": lambda v: as_int(v, "pid", 0, PID_LIMIT), "comm": lambda v: as_str(v, "comm"),
        "interval": lambda v: as_float(v, "interval", 0.0, 1e6), "started": lambda v: as_float(v, "started"),
        "pfn": lambda v: v if isinstance(v, bool) else as_int(v, "pfn"),
    }
    for k, f in checks.items():
        try:
            out[k] = f(m[k])
        except (KeyError, ValueError):
            pass
    samples = m.get("samples")
    if isinstance(samples, list):
        out["samples"] = [x for x in samples if isinstance(x, dict) and isinstance(x.get("file"), str)
                          and SAMPLE_RE.match(x["file"])]
    end = m.get("end")
    if isinstance(end, dict) and isinstance(end.get("reason"), str):
        out["end"] = {"reason": end["reason"][:200], "note": str(end.get("note", ""))[:MAX_TEXT]}
    return out


def load_recording(path: str | os.PathLike[str]) -> tuple[list[Sample], list[BadSnapshot]]:
    """Every sample of a recording that passes validation, and the errors of those that do not
    (a torn or damaged sample must not cost the rest). BadSnapshot when none is readable."""
    good: list[Sample] = []
    bad: list[BadSnapshot] = []
    memo: dict[str, Any] = {}
    for f in sample_files(path):
        try:
            good.append(load_sample(f, memo))
        except BadSnapshot as e:
            bad.append(e)
    if not good:
        raise bad[0] if len(bad) == 1 else BadSnapshot(
            f"{path}: none of its {len(bad)} samples is readable (first: {bad[0]})", path=str(path))
    return good, bad
