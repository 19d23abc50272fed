"""Fleet datasets (docs/dataset.md): Hive-partitioned Parquet that DuckDB and Spark read as one table.

    ROOT/host=H/date=YYYY-MM-DD/part-<time_us>-<pid>-<writer pid>-<seq>.parquet

One file per write (a sample, or --batch samples), and its file of the `ranges` table of the same
name under ROOT/_ranges, published both or neither (store.dataset_writer): a local ROOT gets each
under a hidden temp name (fsync'd), then both names, ranges first (0600 files, 0700 directories);
any other URL that `pyarrow.fs` opens (s3://, gs://) gets one object each, which object stores
publish whole on close. `host` and `date` are partition keys only (never file columns: readers
would see them twice).

Types are the ones both engines read alike (tested): signed int32/int64, string, timestamp[us, UTC].
Not unsigned integers (Spark widens uint64 to decimal(20,0)), not nanosecond timestamps (Spark
refuses them), and a column never changes type between versions (Spark cannot merge int64 with
uint64 files).

Readers follow the files (docs/dataset.md, "Schema evolution"): `pmaps query` sees the union of
the schemas the files have, so a column a newer pmaps added shows (NULL in older files), and a
column whose type changed in a way no scan can cast is one line naming the column and a file.
"""
from __future__ import annotations

import os
import re
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadSnapshot, MissingExtra, PmapsError
from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import Known, Sample
from .codec import ADDR_LIMIT, PID_LIMIT, reason
from .recording import check_sample

# name -> type name; the order is the file's column order. Sizes are bytes. Version 2 appended
# dev, inode (the VMA as maps prints it), known (what the sample could tell) and ranges (how many
# rows of the `ranges` table the sample has; null: none written, as for a process whose pages made
# no valid sample: a torn maps read in `top --dataset`).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "int32"), ("time", "timestamp"), ("seq", "int64"), ("boot_id", "string"), ("kernel", "string"),
    ("pid", "int64"), ("start_ticks", "int64"), ("start_time", "timestamp"), ("comm", "string"), ("exe", "string"),
    ("cgroup", "string"), ("uid", "int64"), ("vma_index", "int32"), ("vma_start", "string"), ("vma_size", "int64"),
    ("perms", "string"), ("file_offset", "int64"), ("path", "string"), ("mapping", "string"), ("build_id", "string"),
    ("rss", "int64"), ("pss", "int64"), ("uss", "int64"), ("shared", "int64"), ("swap", "int64"),
    ("swap_pss", "int64"), ("dirty", "int64"), ("referenced", "int64"), ("ksm", "int64"), ("zero_page", "int64"),
    ("hugetlb", "int64"), ("thp", "int64"), ("anon_thp", "int64"),
    ("dev", "string"), ("inode", "int64"), ("known", "string"), ("ranges", "int64"),
)
# The `ranges` table (version 2): a sample's page ranges, the rows `pmaps diff` and `heatmap` read.
# Maximal runs of pages of one VMA in one state word and map count; `page` is the run's first page
# counted from the VMA's start (ASLR-free). Never a PFN.
RANGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "int32"), ("time", "timestamp"), ("seq", "int64"), ("boot_id", "string"), ("pid", "int64"),
    ("start_ticks", "int64"), ("comm", "string"), ("vma_index", "int32"), ("vma_start", "string"),
    ("page", "int64"), ("count", "int64"), ("state", "int64"), ("mapcount", "int64"),
)
TABLES = ("samples", "ranges")  # the views `pmaps query` registers
RANGES_DIR = "_ranges"  # ROOT/_ranges/host=H/date=D/part-...: Spark, pyarrow and pandas skip '_' names
OBJECT_STORES = ("s3", "gcs")  # pyarrow FileSystem.type_name of stores whose objects need no parent directory
KNOWN_FACTS = ("pfn", "flags", "count", "young", "soft_dirty", "categories", "exclusive")
TIMES = {name for name, t in COLUMNS + RANGE_COLUMNS if t == "timestamp"}
PART_RE = re.compile(r"^part-[0-9-]+\.parquet$")
PARTITION_KEYS = ("host", "date")  # from the path; a file column of either name is shadowed by it
TIME_UNITS = ("s", "ms", "us", "ns")  # coarse to fine: a coarser unit reads exactly in a finer one


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("datasets need pyarrow: pip install 'pmaps[parquet]'") from None
    return pa, pq, pafs


def schema(columns: tuple[tuple[str, str], ...] = COLUMNS) -> Any:
    """The Arrow schema of the `samples` table's files (or of `ranges` with RANGE_COLUMNS)."""
    pa, _, _ = _pyarrow()
    types = {"int32": pa.int32(), "int64": pa.int64(), "string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([(n, types[t]) for n, t in columns])


def known_text(known: Known, exclusive: bool) -> str:
    """The `known` column: the facts a sample's pages carry, comma-separated (KNOWN_FACTS order)."""
    facts = known.to_dict() | {"exclusive": exclusive}
    return ",".join(k for k in KNOWN_FACTS if facts[k])


def decode_known_text(text: str) -> tuple[Known, bool]:
    """(Known, exclusive_known) from a `known` value; ValueError on a fact pmaps never writes."""
    facts = {x for x in text.split(",") if x}
    if facts - set(KNOWN_FACTS):
        raise ValueError(f"known names an unknown fact ({sorted(facts - set(KNOWN_FACTS))[0][:40]!r})")
    return Known(**{k: k in facts for k in KNOWN_FACTS if k != "exclusive"}), "exclusive" in facts


def partition_value(text: str) -> str:
    """A host name made safe as one path component of a Hive partition (no '/', '=', spaces)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def _arrow_table(cols: dict[str, Any], sch: Any) -> Any:
    """Columns (lists or numpy arrays; times in Unix seconds) -> an Arrow table of schema `sch`."""
    pa, _, _ = _pyarrow()
    data = {}
    for name in sch.names:
        v = cols[name]
        if name in TIMES:
            v = np.round(v * 1e6).astype(np.int64) if isinstance(v, np.ndarray) else \
                [None if x is None else round(x * 1e6) for x in v]
        data[name] = v
    try:
        return pa.Table.from_pydict(data, schema=sch)
    except UnicodeEncodeError:  # a path or name holding bytes that are not UTF-8: rare, so not checked first
        for name in sch.names:
            v = data[name]
            if not isinstance(v, np.ndarray) or v.dtype == object:
                data[name] = [_utf8(x) if isinstance(x, str) else x for x in v]
        return pa.Table.from_pydict(data, schema=sch)


def _utf8(text: str) -> str:
    """A Parquet string is UTF-8: a byte of a path that is not UTF-8 (decoded with surrogateescape)
    is stored as the text \\xNN, as the text views show it (docs/dataset.md)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def table_bytes(cols: dict[str, Any] | Iterable[dict[str, Any]],
                columns: tuple[tuple[str, str], ...] = COLUMNS) -> bytes:
    """Columns (as analysis.dataset.sample_rows or range_rows gives them: lists, or numpy arrays;
    times in Unix seconds) -> one Parquet file (zstd). Given an iterable of such column sets, each
    is one row group, converted and compressed as it comes (memory: one set and the output)."""
    pa, pq, _ = _pyarrow()
    sch = schema(columns)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, sch, compression="zstd") as w:
        for part in [cols] if isinstance(cols, dict) else cols:
            w.write_table(_arrow_table(part, sch), row_group_size=1 << 30)
    return bytes(sink.getvalue().to_pybytes())


# Query parameters of pyarrow's S3 URLs that carry a secret (pyarrow.fs.S3FileSystem.from_uri).
SECRET_PARAMS = {"access_key", "secret_key", "session_token"}


def filesystem(root: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path in it) of a dataset root: a local path (or file:// URL), or any
    URL that pyarrow.fs opens (s3://bucket/prefix?endpoint_override=..., gs://...)."""
    if "://" in root and not root.startswith("file://"):
        parts = urllib.parse.urlsplit(root)
        if "@" in parts.netloc or SECRET_PARAMS & set(urllib.parse.parse_qs(parts.query)):
            # Not echoed: pmaps prints ROOT in messages and diff headers, where a secret would leak.
            raise PmapsError("a dataset URL with credentials in it is refused (pmaps prints ROOT in its messages): "
                             "give them in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                             "~/.aws/credentials, GOOGLE_APPLICATION_CREDENTIALS)")
    _, _, pafs = _pyarrow()
    if "://" in root and not root.startswith("file://"):
        try:
            fs, path = pafs.FileSystem.from_uri(root)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for unknown schemes and bad URLs
            raise PmapsError(f"cannot open dataset {root}: {reason(e).splitlines()[0][:300]}") from None
        if not path.strip("/"):  # s3://: pyarrow lists the account's buckets, or refuses the path '/'
            raise PmapsError(f"cannot open dataset {root.split('://')[0]}://: the URL names no bucket")
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(local_path(root)).rstrip("/") or "/"


def local_path(root: str) -> str:
    """The path of a local ROOT (a path, or a file:// URL) as typed. PmapsError when it is empty (a
    bare file://): the writer would take it for '/', the readers for the working directory."""
    path = root[len("file://"):] if root.startswith("file://") else root
    if not path:
        raise PmapsError(f"{root or 'the dataset ROOT'}: names no directory")
    return path


def widens(src: Any, dst: Any) -> bool:
    """Whether every value of Arrow type `src` reads unchanged as `dst` (a scan casts it): the same
    type, an all-null column, a wider integer or float, string and large_string, binary and
    large_binary, a timestamp of the same zone in an equal or finer unit. Not int -> float (2^53),
    not signed -> unsigned, not anything -> string: those change values or their meaning."""
    pa, _, _ = _pyarrow()
    t = pa.types
    if src == dst or t.is_null(src):
        return True
    if t.is_integer(src) and t.is_integer(dst):
        if t.is_signed_integer(src) == t.is_signed_integer(dst):
            return bool(src.bit_width <= dst.bit_width)
        return t.is_unsigned_integer(src) and src.bit_width < dst.bit_width
    if t.is_floating(src) and t.is_floating(dst):
        return bool(src.bit_width <= dst.bit_width)
    if t.is_timestamp(src) and t.is_timestamp(dst):
        return src.tz == dst.tz and TIME_UNITS.index(src.unit) <= TIME_UNITS.index(dst.unit)
    for family in ((t.is_string, t.is_large_string), (t.is_binary, t.is_large_binary)):
        if any(f(src) for f in family) and any(f(dst) for f in family):
            return True
    return False


def unify(root: str, base: Any, schemas: list[tuple[str, Any]], extra: bool = True) -> Any:
    """The schema a table's files read as: `base` (this pmaps version's columns and types) first,
    then, when `extra`, every other column some file has (NULL where a file lacks it) in the order
    the files (given as (name, physical schema), in path order) first show it. A column takes the
    widest of its types (`widens`); a base column keeps its own type. Partition keys in a file are
    skipped (the path's value is the one read). BadSnapshot, one line naming the column and two
    places, when a column's types do not widen to one."""
    pa, _, _ = _pyarrow()
    types: dict[str, tuple[Any, str | None]] = {f.name: (f.type, None) for f in base}  # None: this version's
    for name, sch in schemas:
        for f in sch:
            if f.name in PARTITION_KEYS:
                continue
            have, where = types.get(f.name, (None, None))
            if have is None:
                if extra:
                    types[f.name] = (f.type, name)
            elif widens(f.type, have):
                continue
            elif where is not None and widens(have, f.type):
                types[f.name] = (f.type, name)  # a column pmaps does not know, wider here: take this type
            else:
                there = f"in {where}" if where is not None else "in this pmaps version's schema"
                raise BadSnapshot(f"{root}: column {f.name!r} is {f.type} in {name} but {have} {there}: the types "
                                  "do not read as one (docs/dataset.md, Schema evolution)", path=root)
    return pa.schema([(n, t) for n, (t, _) in types.items()])


def _open(fs: Any, root: str, top: str, files: list[Any], base_dir: str, base: Any, keys: Any = None,
          extra: bool = True) -> Any:
    """One Arrow dataset over these files (pyarrow FileInfos, sorted; `top`: ROOT's path in `fs`,
    messages name files from there), reading as `unify` says (partition columns `keys`, when given,
    parsed from the paths under base_dir and appended).
    Every footer is read first, in parallel (an object store's latency, not its bandwidth, is the
    cost), and kept in its fragment: the scan reuses it (no second footer read), and DuckDB's
    filters skip row groups by their statistics before a file is opened again."""
    pa, _, _ = _pyarrow()
    import pyarrow.dataset as pads

    fmt = pads.ParquetFileFormat()
    part = pads.partitioning(keys, flavor="hive") if keys is not None else None
    names = [i.path[len(top.rstrip("/")) + 1:] for i in files]
    try:
        # host=H/date=D/part-...: the last segment is taken for the file's name, not a partition
        exprs = [part.parse(i.path[len(base_dir.rstrip("/")) + 1:]) if part is not None else None for i in files]
    except (pa.ArrowException, ValueError) as e:
        raise BadSnapshot(f"{root}: corrupt dataset ({reason(e).splitlines()[0][:300]})", path=root) from None
    try:  # the size from the listing spares an object store a HEAD request per open
        frags = [fmt.make_fragment(i.path, fs, x, file_size=i.size) for i, x in zip(files, exprs)]
    except TypeError:  # pyarrow < 15: no file_size
        frags = [fmt.make_fragment(i.path, fs, x) for i, x in zip(files, exprs)]

    def footer(k: int) -> Any:
        try:
            frags[k].ensure_complete_metadata()
            return frags[k].physical_schema
        except (pa.ArrowException, OSError) as e:
            text = (str(e).strip().splitlines() or [type(e).__name__])[0]
            why = text.split("': ", 1)[-1][:200]  # not "Could not open Parquet input source '<path>'" again
            raise BadSnapshot(f"{root}: corrupt dataset file {names[k]} ({why})", path=root) from None

    with ThreadPoolExecutor(max_workers=max(1, min(pa.io_thread_count(), len(frags)))) as pool:
        physical = list(pool.map(footer, range(len(frags))))
    first: dict[Any, str] = {}  # distinct schemas (a dataset mostly has a few), each with its first file
    for n, sch in zip(names, physical):
        first.setdefault(sch.remove_metadata(), n)
    sch = unify(root, base, [(n, x) for x, n in first.items()], extra)
    if keys is not None:
        sch = pa.unify_schemas([sch, keys])
    return pads.FileSystemDataset(frags, sch, fmt, fs)


def arrow_tables(root: str, names: Iterable[str] = TABLES) -> tuple[dict[str, Any], int]:
    """(The dataset's tables named in `names` as pyarrow datasets by view name, the number of files
    of all): `samples` (ROOT/host=*/date=*/part-*.parquet) and `ranges` (the same under
    ROOT/_ranges/), each with its
    partition columns host (string) and date (date) last; a table without files is an empty one of
    its columns. The files are found by one recursive listing (local or object store) and are those
    the writer names (not dot-files, not temp files). Each table reads as the union of its files'
    schemas (`unify`): this version's columns, then any a newer pmaps added; NULL where a file
    lacks a column (an older or a newer writer's)."""
    pa, _, pafs = _pyarrow()

    fs, path = filesystem(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise PmapsError(f"cannot read dataset {root}: {reason(e).splitlines()[0][:300]}") from None
    prefix = path.rstrip("/") + "/"
    files: dict[str, list[Any]] = {"samples": [], "ranges": []}
    for i in infos:
        rel = i.path[len(prefix):].split("/")
        table = "samples"
        if rel[0] == RANGES_DIR:
            rel, table = rel[1:], "ranges"
        if i.type == pafs.FileType.File and len(rel) == 3 and rel[0].startswith("host=") \
                and rel[1].startswith("date=") and PART_RE.match(rel[2]):
            files[table].append(i)
    keys = pa.schema([("host", pa.string()), ("date", pa.date32())])
    out = {}
    for name, cols, base in (("samples", COLUMNS, path.rstrip("/")), ("ranges", RANGE_COLUMNS, prefix + RANGES_DIR)):
        if name not in names:
            continue  # not read: neither its footers nor its files' types
        if not files[name]:
            out[name] = pa.unify_schemas([schema(cols), keys]).empty_table()
            continue
        out[name] = _open(fs, root, path, sorted(files[name], key=lambda i: str(i.path)), base, schema(cols), keys)
    return out, sum(len(f) for f in files.values())


# -- reading a process's samples back (pmaps diff / heatmap ROOT) --------------------------
def is_dataset(path: str) -> bool:
    """A fleet dataset's root rather than a recording: a URL, or a directory holding host=* or _ranges."""
    if "://" in path and not path.startswith("file://"):
        return True
    path = path[len("file://"):] if path.startswith("file://") else path
    try:
        return os.path.isdir(path) and any(n.startswith("host=") or n == RANGES_DIR for n in os.listdir(path))
    except OSError:
        return False


@dataclass(frozen=True)
class ProcSamples:
    """One process of one host as the dataset holds it: its identity and its samples in time order."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int
    comm: str
    times_us: tuple[int, ...]  # sample times, microseconds since the epoch
    seqs: tuple[int, ...]
    ranges: tuple[int | None, ...]  # rows in the `ranges` table per sample; None: none written


# The columns DatasetReader reads (diff and heatmap), by table ("" samples, RANGES_DIR ranges):
# their filters' and the sample's. A type clash in any other column is not theirs to refuse.
READS = {"": ("time", "seq", "boot_id", "pid", "start_ticks", "comm", "vma_index", "vma_start", "vma_size", "perms",
              "file_offset", "dev", "inode", "path", "known", "ranges"),
         RANGES_DIR: ("time", "boot_id", "pid", "start_ticks", "vma_index", "vma_start", "page", "count", "state",
                      "mapcount")}


class DatasetReader:
    """Reads one host's partitions of a dataset (local path or pyarrow.fs URL) with pyarrow.

    It reads the columns diff and heatmap need (READS), as this version types them: any other
    column, one a newer pmaps added or not, is left alone; one an older file lacks reads as null
    (the sample's checks then say what is missing). A file that is not a readable dataset file, or
    whose column of READS has a type that does not widen to this version's (`unify`), is
    BadSnapshot, one line naming it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.path = filesystem(root)
        self._sets: dict[tuple[str, str], Any] = {}  # (host, table) -> dataset: footers read once

    def _list(self, d: str, recursive: bool = False) -> list[Any]:
        _, _, pafs = _pyarrow()
        try:
            return list(self.fs.get_file_info(pafs.FileSelector(d, recursive=recursive, allow_not_found=True)))
        except OSError as e:
            raise PmapsError(f"cannot read dataset {self.root}: {e}") from None

    def hosts(self) -> list[str]:
        """Host partition values (as written: partition_value of the node name), sorted."""
        _, _, pafs = _pyarrow()
        return sorted(i.base_name[5:] for i in self._list(self.path)
                      if i.type == pafs.FileType.Directory and i.base_name.startswith("host="))

    def _files(self, host: str, table: str = "") -> list[Any]:
        _, _, pafs = _pyarrow()
        d = f"{self.path}{'/' + table if table else ''}/host={host}"
        out = []
        for i in self._list(d, recursive=True):
            rel = i.path[len(d) + 1:].split("/")
            if i.type == pafs.FileType.File and len(rel) == 2 and rel[0].startswith("date=") \
                    and PART_RE.match(rel[1]):
                out.append(i)
        return sorted(out, key=lambda i: str(i.path))

    def _read(self, host: str, table: str, names: list[str], where: Any) -> Any:
        """These columns of a host's rows of `samples` (table "") or `ranges` (RANGES_DIR)."""
        pa, _, _ = _pyarrow()
        columns = tuple(c for c in (RANGE_COLUMNS if table else COLUMNS) if c[0] in READS[table])
        if (host, table) not in self._sets:
            files = self._files(host, table)
            self._sets[host, table] = _open(self.fs, self.root, self.path, files, self.path, schema(columns),
                                            extra=False) if files else None
        dset = self._sets[host, table]
        if dset is None:
            return schema(columns).empty_table().select(names)
        try:
            return dset.to_table(columns=names, filter=where)
        except (pa.ArrowException, OSError) as e:
            raise BadSnapshot(f"{self.root}: corrupt dataset file ({reason(e).splitlines()[0][:300]})",
                              path=self.root) from None

    def processes(self, host: str, pid: int | None = None) -> list[ProcSamples]:
        """The processes of a host (or those with this pid), each with its samples in time order."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        pa, _, _ = _pyarrow()
        where = pads.field("pid") == pid if pid is not None else None
        t = self._read(host, "", ["time", "seq", "boot_id", "pid", "start_ticks", "comm", "ranges"], where)
        t = t.set_column(0, "time", pc.cast(t.column("time"), pa.int64()))
        g = t.group_by(["boot_id", "pid", "start_ticks", "time", "seq"], use_threads=False).aggregate(
            [("comm", "max"), ("ranges", "max")]).to_pydict()
        per: dict[tuple[str, int, int], list[tuple[int, int, str, int | None]]] = {}
        for b, p, st, tm, sq, comm, nr in zip(g["boot_id"], g["pid"], g["start_ticks"], g["time"], g["seq"],
                                              g["comm_max"], g["ranges_max"]):
            per.setdefault((b, p, st), []).append((tm, sq, comm, nr))
        out = []
        for (b, p, st), rows in per.items():
            rows.sort()
            out.append(ProcSamples(host, b, p, st, rows[-1][2], tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                                   tuple(r[3] for r in rows)))
        return sorted(out, key=lambda x: (x.pid, x.times_us[0], x.boot_id))

    def samples(self, proc: ProcSamples, times_us: list[int]) -> list[Sample]:
        """The samples of `proc` taken at these times, rebuilt from their VMA rows and their ranges:
        the Samples `record` took (PFNs excepted: never stored). BadSnapshot when the rows do not
        make a valid sample (a missing or torn ranges file, damaged values)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        pa, _, _ = _pyarrow()
        who = (pads.field("boot_id") == proc.boot_id) & (pads.field("pid") == proc.pid) \
            & (pads.field("start_ticks") == proc.start_ticks)
        when = pads.field("time").isin(pa.array(times_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")))
        vcols = ["time", "seq", "comm", "vma_index", "vma_start", "vma_size", "perms", "file_offset", "dev", "inode",
                 "path", "known", "ranges"]
        v = self._read(proc.host, "", vcols, who & when)
        rcols = ["time", "vma_index", "vma_start", "page", "count", "state", "mapcount"]
        r = self._read(proc.host, RANGES_DIR, rcols, who & when)
        vt = pc.cast(v.column("time"), pa.int64()).to_numpy()
        rt = pc.cast(r.column("time"), pa.int64()).to_numpy()
        vd = v.to_pydict()
        rd = {c: r.column(c).to_numpy(zero_copy_only=False) for c in rcols[1:]}
        rorder = np.lexsort((rd["page"], rd["vma_index"], rt))
        rt = rt[rorder]
        out = []
        for t in times_us:
            rows = sorted(np.flatnonzero(vt == t).tolist(), key=lambda i: vd["vma_index"][i])
            lo, hi = np.searchsorted(rt, t, "left"), np.searchsorted(rt, t, "right")
            sel = rorder[lo:hi]
            name = f"{self.root}: sample of pid {proc.pid} at {iso_us(t)}"
            try:
                s = _sample(proc.pid, t, {k: [vd[k][i] for i in rows] for k in vcols},
                            {k: c[sel] for k, c in rd.items()})
            except (ValueError, TypeError, OverflowError) as e:
                raise BadSnapshot(f"{name}: corrupt dataset rows ({reason(e)})", path=self.root) from None
            out.append(s)
        return out


def iso_us(t_us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC, as `pmaps query` prints a time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_us // 1_000_000)) + f".{t_us % 1_000_000:06d}Z"


def _sample(pid: int, t_us: int, v: dict[str, list[Any]], r: dict[str, np.ndarray]) -> Sample:
    """One Sample from its VMA rows (in vma_index order) and its range rows (in VMA, page order)."""
    if not v["vma_index"]:
        raise ValueError("no VMA rows")
    if v["vma_index"] != list(range(len(v["vma_index"]))):
        raise ValueError("VMA rows are not numbered 0..n-1")
    if len(set(v["seq"])) != 1 or len(set(v["known"])) != 1 or len(set(v["ranges"])) != 1:
        raise ValueError("the rows of one sample disagree")
    if v["known"][0] is None or v["ranges"][0] is None:
        raise ValueError("the sample has no page ranges (written before dataset version 2)")
    known, exclusive = decode_known_text(v["known"][0])
    vmas = []
    prev_end = 0
    for i, (a, n, p, o, d, ino, path) in enumerate(zip(v["vma_start"], v["vma_size"], v["perms"], v["file_offset"],
                                                         v["dev"], v["inode"], v["path"])):
        if None in (a, n, p, o, d, ino) or not re.fullmatch(r"[0-9a-f]{1,16}", a):
            raise ValueError(f"VMA {i} has a missing or malformed field")
        vm = Vma(int(a, 16), int(a, 16) + n, p, o, d, ino, path or "")
        if not (prev_end <= vm.start < vm.end <= ADDR_LIMIT) or (vm.start | vm.end) & 0xFFF or o < 0 or ino < 0:
            raise ValueError(f"VMA {i} is out of order or not a valid address range")
        prev_end = vm.end
        vmas.append(vm)
    n = len(r["page"])
    if n != v["ranges"][0]:
        raise ValueError(f"{n} range rows, {v['ranges'][0]} written (a ranges file is missing or torn)")
    for c in ("vma_index", "page", "count", "state", "mapcount"):
        if r[c].dtype.kind not in "iu":
            raise ValueError(f"column {c} holds nulls")
    vi = r["vma_index"].astype(np.int64)
    if n and (vi.min() < 0 or vi.max() >= len(vmas)):
        raise ValueError("a range names a VMA the sample does not list")
    starts = np.array([f"{x.start:x}" for x in vmas], dtype=object)
    if n and not (starts[vi] == r["vma_start"]).all():
        raise ValueError("a range's vma_start disagrees with its VMA")
    if n and ((r["page"] < 0).any() or (r["state"] < 0).any()):
        raise ValueError("a range has a negative page or state")
    base = np.array([x.start >> PAGE_SHIFT for x in vmas], dtype=np.uint64)
    s = Sample(pid, v["comm"][0], vmas, known, vi.astype(np.int32), base[vi] + r["page"].astype(np.uint64),
               r["count"].astype(np.int64), r["state"].astype(np.uint64), r["mapcount"].astype(np.int64), None,
               t_us / 1e6, int(v["seq"][0]), 0.0, exclusive)
    if not 0 < pid < PID_LIMIT:
        raise ValueError("pid out of range")
    check_sample(s)
    return s
