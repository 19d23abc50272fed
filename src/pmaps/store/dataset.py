"""Fleet datasets (docs/dataset.md): Hive-partitioned Parquet that DuckDB and Spark read as one table.

    ROOT/host=H/date=YYYY-MM-DD/part-<time_us>-<pid>-<writer pid>-<seq>.parquet

One file per write (a sample, or --batch samples), written atomically: a local ROOT gets a temp
file, fsync and rename (0600 files, 0700 directories); any other URL that `pyarrow.fs` opens
(s3://, gs://) gets one object, which object stores publish whole on close. `host` and `date` are
partition keys only (never file columns: readers would see them twice).

Types are the ones both engines read alike (tested): signed int32/int64, string, timestamp[us, UTC].
Not unsigned integers (Spark widens uint64 to decimal(20,0)), not nanosecond timestamps (Spark
refuses them), and a column never changes type between versions (Spark cannot merge int64 with
uint64 files).
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

from ..errors import MissingExtra, PmapsError
from .files import file_errors, save_bytes

# name -> type name; the order is the file's column order. Sizes are bytes.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "int32"), ("time", "timestamp"), ("seq", "int64"), ("boot_id", "string"), ("kernel", "string"),
    ("pid", "int64"), ("start_ticks", "int64"), ("start_time", "timestamp"), ("comm", "string"), ("exe", "string"),
    ("cgroup", "string"), ("uid", "int64"), ("vma_index", "int32"), ("vma_start", "string"), ("vma_size", "int64"),
    ("perms", "string"), ("file_offset", "int64"), ("path", "string"), ("mapping", "string"), ("build_id", "string"),
    ("rss", "int64"), ("pss", "int64"), ("uss", "int64"), ("shared", "int64"), ("swap", "int64"),
    ("swap_pss", "int64"), ("dirty", "int64"), ("referenced", "int64"), ("ksm", "int64"), ("zero_page", "int64"),
    ("hugetlb", "int64"), ("thp", "int64"), ("anon_thp", "int64"),
)
TIMES = {name for name, t in COLUMNS if t == "timestamp"}
PART_RE = re.compile(r"^part-[0-9-]+\.parquet$")


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("datasets need pyarrow: pip install 'pmaps[parquet]'") from None
    return pa, pq, pafs


def schema() -> Any:
    pa, _, _ = _pyarrow()
    types = {"int32": pa.int32(), "int64": pa.int64(), "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([(n, types[t]) for n, t in COLUMNS])


def partition_value(text: str) -> str:
    """A host name made safe as one path component of a Hive partition (no '/', '=', spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def table_bytes(cols: dict[str, list[Any]]) -> bytes:
    """Columns (as analysis.dataset.sample_rows gives them) -> one Parquet file (zstd)."""
    pa, pq, _ = _pyarrow()
    data = {}
    for name in schema().names:
        v = cols[name]
        data[name] = [None if x is None else round(x * 1e6) for x in v] if name in TIMES else v
    table = pa.Table.from_pydict(data, schema=schema())
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


class DatasetWriter:
    """Appends part files under ROOT/host=H/date=D/."""

    def __init__(self, root: str, host: str) -> None:
        self.root, self.host = root.rstrip("/") or "/", partition_value(host)
        self.local = "://" not in root or root.startswith("file://")
        if self.local:
            self.path = root[len("file://"):] if root.startswith("file://") else root
            self.fs = None
        else:
            _, _, pafs = _pyarrow()
            try:
                self.fs, self.path = pafs.FileSystem.from_uri(root)
            except Exception as e:  # pyarrow raises ArrowInvalid / OSError for unknown schemes and bad URLs
                raise PmapsError(f"cannot open dataset {root}: {e}") from None

    def _dir(self, when: float) -> str:
        return f"{self.path.rstrip('/')}/host={self.host}/date={time.strftime('%Y-%m-%d', time.gmtime(when))}"

    def write(self, cols: dict[str, list[Any]], when: float, pid: int, seq: int) -> tuple[str, int]:
        """One part file holding these rows; returns (its path, its size)."""
        data = table_bytes(cols)
        d = self._dir(when)
        name = f"part-{round(when * 1e6)}-{pid}-{os.getpid()}-{seq:06d}.parquet"
        if self.fs is None:
            with file_errors(d, "create"):
                made = d
                parents = []
                while made and not os.path.isdir(made):
                    parents.append(made)
                    made = os.path.dirname(made)
                for p in reversed(parents):
                    os.makedirs(p, mode=0o700, exist_ok=True)
            save_bytes(f"{d}/{name}", data, 0o600)
        else:
            try:
                self.fs.create_dir(d, recursive=True)
                with self.fs.open_output_stream(f"{d}/{name}") as f:
                    f.write(data)
            except OSError as e:
                raise PmapsError(f"cannot write {self.root}: {e}") from e
        return f"{d}/{name}", len(data)


def duckdb_source(root: str) -> str:
    """The DuckDB table expression that reads the whole dataset (host as text, date as DATE)."""
    glob = root.rstrip("/") + "/host=*/date=*/part-*.parquet"
    quoted = glob.replace("'", "''")
    return (f"read_parquet('{quoted}', hive_partitioning = true, union_by_name = true, "
            "hive_types = {'host': VARCHAR, 'date': DATE})")
