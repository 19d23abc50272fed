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
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadSnapshot, MissingExtra, PmapsError
from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import Known, Sample
from .codec import ADDR_LIMIT, MAX_META, MAX_ROWS, MAX_TEXT, PID_LIMIT, TIME_LIMIT, reason
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
            sch = frags[k].physical_schema
            [f.name for f in sch]  # a column name that is not UTF-8 raises here, not wherever it is read
            return sch
        except (pa.ArrowException, OSError) as e:
            text = (str(e).strip().splitlines() or [type(e).__name__])[0]
            why = text.split("': ", 1)[-1][:200]  # not "Could not open Parquet input source '<path>'" again
            raise BadSnapshot(f"{root}: corrupt dataset file {names[k]} ({why})", path=root) from None
        except UnicodeDecodeError:
            raise BadSnapshot(f"{root}: corrupt dataset file {names[k]} (a column name is not UTF-8)",
                              path=root) from None

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
    rows: tuple[int, ...] = ()  # rows in the `samples` table (its VMAs) per sample; () not counted


# The columns DatasetReader reads (diff and heatmap), by table ("" samples, RANGES_DIR ranges):
# their filters' and the sample's. A type clash in any other column is not theirs to refuse.
READS = {"": ("time", "seq", "boot_id", "pid", "start_ticks", "comm", "vma_index", "vma_start", "vma_size", "perms",
              "file_offset", "dev", "inode", "path", "known", "ranges"),
         RANGES_DIR: ("time", "boot_id", "pid", "start_ticks", "vma_index", "vma_start", "page", "count", "state",
                      "mapcount")}
# Those pmaps writes in every row: a null there is a damaged file. (path is null for anonymous
# memory; dev, inode, known and ranges in version-1 rows: the sample's checks say what is missing.)
NOT_NULL = frozenset(READS[""] + READS[RANGES_DIR]) - {"path", "dev", "inode", "known", "ranges"}
# The caps of what diff and heatmap read back are the recordings' (store.codec): a sample's range
# rows MAX_ROWS, as a sample file's; its VMA rows MAX_VMAS, about as many as a recording's metadata
# holds (MAX_META bytes of JSON, ~60 a VMA; vm.max_map_count is 65530 unless raised). A path is
# at most TEXT_CAP bytes (MAX_TEXT bytes, each stored as up to the four characters \xNN); other text
# at most its TEXT_CAPS, well above what pmaps writes (a comm of 15 bytes, a boot_id of 36, `known`
# of 50): a batch of them expanded from a dictionary stays small.
MAX_VMAS = MAX_META // 64
TEXT_CAP = 4 * MAX_TEXT
TEXT_CAPS = {"vma_start": 16, "perms": 8, "dev": 32, "comm": 256, "boot_id": 64, "known": 256}
SCAN_ROWS = 1 << 16  # rows the readers of diff and heatmap decode at a time
PROC_KEYS = ["boot_id", "pid", "start_ticks", "time", "seq"]  # one sample of one process


def bounds() -> dict[str, tuple[int, int]]:
    """Value ranges of the identity and count columns (time in microseconds), as a recording's
    fields are checked."""
    return {"time": (0, TIME_LIMIT * 1_000_000 - 1), "seq": (0, 1 << 40), "pid": (1, PID_LIMIT - 1),
            "start_ticks": (0, (1 << 63) - 1), "ranges": (0, MAX_ROWS), "vma_index": (0, MAX_VMAS - 1)}


class DatasetReader:
    """Reads one host's partitions of a dataset (local path or pyarrow.fs URL) with pyarrow.

    It reads the columns diff and heatmap need (READS), as this version types them: any other
    column, one a newer pmaps added or not, is left alone; one an older file lacks reads as null
    (the sample's checks then say what is missing). A file that is not a readable dataset file, or
    whose column of READS has a type that does not widen to this version's (`unify`), is
    BadSnapshot, one line naming it.

    Rows come from Arrow a batch at a time (SCAN_ROWS), each checked before it is kept (no null
    where pmaps always writes a value, UTF-8 text of a sane length, identities in range: BadSnapshot
    naming the file), and a sample's rows are counted as they come: past the caps above (or past
    the range rows the sample declares) it is corrupt, before its rows are converted to Python."""

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

    def _dataset(self, host: str, table: str) -> Any:
        """The Arrow dataset of a host's files of `samples` (table "") or `ranges` (RANGES_DIR),
        typed as READS says (footers read once); None when it has none."""
        columns = tuple(c for c in (RANGE_COLUMNS if table else COLUMNS) if c[0] in READS[table])
        if (host, table) not in self._sets:
            files = self._files(host, table)
            self._sets[host, table] = _open(self.fs, self.root, self.path, files, self.path, schema(columns),
                                            extra=False) if files else None
        return self._sets[host, table]

    def _empty(self, table: str, names: list[str]) -> Any:
        """No rows of these columns, typed as _scan gives them."""
        pa, _, _ = _pyarrow()
        sch = schema(RANGE_COLUMNS if table else COLUMNS)
        return pa.schema([("path", pa.dictionary(pa.int32(), pa.string())) if c == "path" else sch.field(c)
                          for c in names]).empty_table()

    def _scan(self, host: str, table: str, names: list[str], where: Any) -> Iterator[tuple[Any, str]]:
        """These columns of a host's rows of `samples` (table "") or `ranges` (RANGES_DIR) that
        match `where` (on the columns of PROC_KEYS), as (table of at most SCAN_ROWS rows, checked;
        its file's name from ROOT). Each file's row groups are chosen by their statistics and read
        with pyarrow.parquet's batch reader, which decodes SCAN_ROWS rows at a time (a dataset
        scan decodes whole row groups: 50 M rows in 2.8 MB took 12 GB). Text comes as dictionaries
        whose values are checked (`_text`) before they are expanded; `path` stays one (a value of
        up to TEXT_CAP bytes, repeated on every row, is one string)."""
        pa, pq, _ = _pyarrow()
        dset = self._dataset(host, table)
        if dset is None:
            return
        read = list(dict.fromkeys(names + [c for c in PROC_KEYS if c in dset.schema.names]))
        for frag in dset.get_fragments():
            name = str(frag.path)[len(self.path.rstrip("/")) + 1:]
            try:
                groups = [g.id for g in (frag if where is None else frag.subset(where, schema=dset.schema)).row_groups]
                phys = frag.physical_schema
                present = [c for c in read if c in phys.names]
                twice = [c for c in present if len(phys.get_all_field_indices(c)) > 1]
                if twice:  # which one would be read is pyarrow's choice: no file of pmaps has that
                    raise BadSnapshot(f"{self.root}: corrupt dataset file {name} (column {twice[0]} appears "
                                      f"{len(phys.get_all_field_indices(twice[0]))} times)", path=self.root)
                text = [c for c in present if pa.types.is_string(phys.field(c).type)
                        or pa.types.is_large_string(phys.field(c).type)]
                if not groups:
                    continue
                with self.fs.open_input_file(frag.path) as f:
                    pf = pq.ParquetFile(f, metadata=frag.metadata, read_dictionary=text,
                                        pre_buffer=self.fs.type_name != "local")
                    for batch in pf.iter_batches(batch_size=SCAN_ROWS, row_groups=groups, columns=present,
                                                 use_threads=False):
                        t = self._conform(batch, dset.schema, read, name)
                        yield self._checked((t if where is None else t.filter(where)).select(names), name), name
            except (pa.ArrowException, OSError, KeyError) as e:  # KeyError: pyarrow on a column it cannot find
                why = (str(e).strip().splitlines() or [type(e).__name__])[0].split("': ", 1)[-1][:200]
                raise BadSnapshot(f"{self.root}: corrupt dataset file {name} ({why})", path=self.root) from None

    def _conform(self, batch: Any, sch: Any, names: list[str], name: str) -> Any:
        """A batch of a file as a table of these columns typed as `sch` says (a column the file
        lacks is null; a narrower type widened, as `unify` allows), its text checked."""
        pa, _, _ = _pyarrow()
        cols = []
        for c in names:
            want = sch.field(c).type
            if c == "path":
                want = pa.dictionary(pa.int32(), want)
            if c not in batch.schema.names or pa.types.is_null(batch.column(c).type):
                col = pa.nulls(len(batch), want)
            else:
                col = batch.column(c)
                if pa.types.is_dictionary(col.type) or pa.types.is_string(want) or pa.types.is_dictionary(want):
                    col = self._text(col, c, name)
                col = col if col.type == want else col.cast(want)
            cols.append(col)
        return pa.Table.from_arrays(cols, names=names)

    def _text(self, col: Any, c: str, name: str) -> Any:
        """A text column (a dictionary, as _scan reads text) once its values are UTF-8 and at most
        TEXT_CAPS (else BadSnapshot naming the file): expanded, but `path` (kept a dictionary)."""
        import pyarrow.compute as pc

        pa, _, _ = _pyarrow()
        values = col.dictionary if pa.types.is_dictionary(col.type) else col
        why = ""
        try:
            values.validate(full=True)
        except pa.ArrowInvalid:
            why = "holds text that is not UTF-8"
        else:
            n = pc.max(pc.binary_length(values)).as_py() if len(values) > values.null_count else 0
            if n > TEXT_CAPS.get(c, TEXT_CAP):
                why = f"holds a text of {n} bytes"
            elif values is not col:
                try:
                    col.validate(full=True)  # a damaged page's indices may point past the dictionary
                except pa.ArrowInvalid as e:
                    why = f"is damaged ({reason(e)[:200]})"
        if why:
            raise BadSnapshot(f"{self.root}: corrupt dataset file {name} (column {c} {why})", path=self.root)
        if pa.types.is_dictionary(col.type) and c != "path":
            col = col.dictionary_decode()
        return col

    def _checked(self, t: Any, name: str) -> Any:
        """The rows, once no column pmaps always writes holds a null and every identity and count
        is in range; else BadSnapshot naming the file."""
        import pyarrow.compute as pc

        pa, _, _ = _pyarrow()
        limits = bounds()
        for c, col in zip(t.column_names, t.columns):
            why = ""
            if col.null_count and c in NOT_NULL:
                why = "holds nulls"
            elif c in limits and len(col) > col.null_count:
                lo, hi = limits[c]
                mm = pc.min_max(pc.cast(col, pa.int64()) if pa.types.is_timestamp(col.type) else col).as_py()
                if mm["min"] < lo or mm["max"] > hi:
                    why = f"holds {mm['min'] if mm['min'] < lo else mm['max']}, out of range"
            if why:
                raise BadSnapshot(f"{self.root}: corrupt dataset file {name} (column {c} {why})", path=self.root)
        return t

    def processes(self, host: str, pid: int | None = None) -> list[ProcSamples]:
        """The processes of a host (or those with this pid), each with its samples in time order.
        The rows are grouped a batch at a time: memory is one batch and the samples' keys."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        pa, _, _ = _pyarrow()
        where = pads.field("pid") == pid if pid is not None else None
        names = ["comm_max", "ranges_max", "comm_count"]

        def group(t: Any, merge: bool) -> Any:  # per sample: its comm, its ranges, its rows (VMAs)
            aggs = [("comm_max", "max"), ("ranges_max", "max"), ("comm_count", "sum")] if merge else \
                [("comm", "max"), ("ranges", "max"), ("comm", "count")]
            g = t.group_by(PROC_KEYS, use_threads=False).aggregate(aggs)
            return g.rename_columns([n[:-4] if merge and n.endswith(("_max_max", "_count_sum")) else n
                                     for n in g.column_names]).select(PROC_KEYS + names)

        parts: list[Any] = []
        held = 0
        for t, _ in self._scan(host, "", ["time", "seq", "boot_id", "pid", "start_ticks", "comm", "ranges"], where):
            parts.append(group(t.set_column(0, "time", pc.cast(t.column("time"), pa.int64())), False))
            held += len(parts[-1])
            if len(parts) > 1 and held > 4 * SCAN_ROWS:  # many samples: merge what is held
                parts = [group(pa.concat_tables(parts), True)]
                held = len(parts[0])
        if len(parts) > 1:
            parts = [group(pa.concat_tables(parts), True)]
        g = parts[0].to_pydict() if parts else {c: [] for c in PROC_KEYS + names}
        per: dict[tuple[str, int, int], list[tuple[int, int, str, int | None, int]]] = {}
        for b, p, st, tm, sq, comm, nr, n in zip(*(g[c] for c in PROC_KEYS + names)):
            per.setdefault((b, p, st), []).append((tm, sq, comm, nr, n))
        out = []
        for (b, p, st), rows in per.items():
            rows.sort()
            out.append(ProcSamples(host, b, p, st, rows[-1][2], tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                                   tuple(r[3] for r in rows), tuple(r[4] for r in rows)))
        return sorted(out, key=lambda x: (x.pid, x.times_us[0], x.boot_id))

    def samples(self, proc: ProcSamples, times_us: list[int]) -> list[Sample]:
        """The samples of `proc` taken at these times, rebuilt from their VMA rows and their ranges:
        the Samples `record` took (PFNs excepted: never stored). BadSnapshot when the rows do not
        make a valid sample (a missing or torn ranges file, damaged values) or pass the caps (a
        sample's VMA rows counted by `processes` are checked before any is read). Read a few
        samples at a time: memory is the samples and the rows of at most MAX_VMAS VMAs and
        MAX_ROWS ranges (or of one sample, if larger) in Arrow."""
        vmas = dict(zip(proc.times_us, proc.rows))
        declared: dict[int, int] = {}
        for t, n in zip(proc.times_us, proc.ranges):
            declared[t] = declared.get(t, 0) + (MAX_ROWS if n is None else n)
        for t in times_us:
            if vmas.get(t, 0) > MAX_VMAS:
                raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows ({vmas[t]} VMA rows: more than "
                                  f"a sample holds, {MAX_VMAS})", path=self.root)
            if declared.get(t, 0) > MAX_ROWS:
                raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows ({declared[t]} range rows written: "
                                  f"more than a sample holds, {MAX_ROWS})", path=self.root)
        out: list[Sample] = []
        chunk: list[int] = []
        nv = nr = 0
        for t in times_us:
            v, r = vmas.get(t, 1), declared.get(t, 0)
            if chunk and (nv + v > MAX_VMAS or nr + r > MAX_ROWS):
                out += self._samples(proc, chunk, declared)
                chunk, nv, nr = [], 0, 0
            chunk.append(t)
            nv, nr = nv + v, nr + r
        if chunk:
            out += self._samples(proc, chunk, declared)
        return out

    def _name(self, proc: ProcSamples, t_us: int) -> str:
        return f"{self.root}: sample of pid {proc.pid} at {iso_us(t_us)}"

    def _rows(self, proc: ProcSamples, table: str, names: list[str], times_us: list[int],
              cap: dict[int, int]) -> Any:
        """The rows of these samples of `proc` in `table`, as one Arrow table: at most cap[t] of the
        sample at t, counted batch by batch before any is kept past it; VMA rows (table "") each of
        a vma_index below cap[t] seen once, so copies of one row stop at the second (else
        BadSnapshot)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        pa, _, _ = _pyarrow()
        who = (pads.field("boot_id") == proc.boot_id) & (pads.field("pid") == proc.pid) \
            & (pads.field("start_ticks") == proc.start_ticks)
        when = pads.field("time").isin(pa.array(times_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")))
        seen: dict[int, int] = {}
        numbered: dict[int, np.ndarray] = {}  # VMA rows: which vma_index each sample has had
        kept = []
        what = "range" if table else "VMA"
        for rows, name in self._scan(proc.host, table, names, who & when):
            tt = pc.cast(rows.column("time"), pa.int64()).to_numpy()
            for t, n in zip(*(x.tolist() for x in np.unique(tt, return_counts=True))):
                seen[t] = seen.get(t, 0) + n
                if seen[t] > cap.get(t, 0):
                    raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows (more than {cap.get(t, 0)} "
                                      f"{what} rows, the last in {name})", path=self.root)
                if not table:
                    vi = rows.column("vma_index").to_numpy()[tt == t]
                    have = numbered.setdefault(t, np.zeros(cap.get(t, 0), bool))
                    if vi.min() < 0 or vi.max() >= len(have) or have[vi].any() or len(np.unique(vi)) < len(vi):
                        raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows (VMA rows are not numbered "
                                          f"0..n-1: {name})", path=self.root)
                    have[vi] = True
            kept.append(rows)
        return pa.concat_tables(kept) if kept else self._empty(table, names)

    def _samples(self, proc: ProcSamples, times_us: list[int], declared: dict[int, int]) -> list[Sample]:
        import pyarrow.compute as pc

        pa, _, _ = _pyarrow()
        vcols = ["time", "seq", "comm", "vma_index", "vma_start", "vma_size", "perms", "file_offset", "dev", "inode",
                 "path", "known", "ranges"]
        counted = dict(zip(proc.times_us, proc.rows))  # by processes(): the same files
        v = self._rows(proc, "", vcols, times_us, {t: counted.get(t, MAX_VMAS) for t in times_us})
        v = v.take(pc.sort_indices(v, sort_keys=[("time", "ascending"), ("vma_index", "ascending")]))
        rcols = ["time", "vma_index", "vma_start", "page", "count", "state", "mapcount"]
        r = self._rows(proc, RANGES_DIR, rcols, times_us, declared)
        vt = pc.cast(v.column("time"), pa.int64()).to_numpy()
        rt = pc.cast(r.column("time"), pa.int64()).to_numpy()
        rd: dict[str, Any] = {c: r.column(c).to_numpy() for c in rcols[1:] if c != "vma_start"}
        rorder = np.lexsort((rd["page"], rd["vma_index"], rt))
        rt = rt[rorder]
        starts = r.column("vma_start").combine_chunks()
        out = []
        for t in times_us:
            lo, hi = np.searchsorted(vt, t, "left"), np.searchsorted(vt, t, "right")
            rows = v.slice(lo, hi - lo)  # at most MAX_VMAS rows: converted to Python one sample at a time
            # Before any row is converted: numbered 0..n-1, their starts rising (hex of one width
            # sorts as its numbers), as every sample pmaps wrote; _sample checks each VMA fully.
            at = pc.utf8_lpad(rows.column("vma_start"), 16, "0")
            why = ""
            if not np.array_equal(rows.column("vma_index").to_numpy(), np.arange(len(rows))):
                why = "are not numbered 0..n-1"
            elif len(rows) > 1 and not pc.all(pc.less(at.slice(0, len(rows) - 1), at.slice(1))).as_py():
                why = "are out of address order"
            if why:
                raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows (VMA rows {why})", path=self.root)
            lo, hi = np.searchsorted(rt, t, "left"), np.searchsorted(rt, t, "right")
            sel = rorder[lo:hi]
            ranges = {k: c[sel] for k, c in rd.items()} | {"vma_start": starts.take(pa.array(sel, pa.int64()))}
            try:
                s = _sample(proc.pid, t, {k: _pylist(rows.column(k)) for k in vcols[1:]}, ranges)
            except (ValueError, TypeError, OverflowError, pa.ArrowException) as e:
                raise BadSnapshot(f"{self._name(proc, t)}: corrupt dataset rows ({reason(e)})",
                                  path=self.root) from None
            out.append(s)
        return out


def _pylist(col: Any) -> list[Any]:
    """A column's values as Python objects; a dictionary's as one object per distinct value used."""
    pa, _, _ = _pyarrow()
    if not pa.types.is_dictionary(col.type):
        return list(col.to_pylist())
    if not len(col):
        return []
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    idx = arr.indices.to_pylist()
    used = sorted({i for i in idx if i is not None})
    values = dict(zip(used, arr.dictionary.take(pa.array(used, pa.int64())).to_pylist()))
    return [None if i is None else values[i] for i in idx]


def iso_us(t_us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC, as `pmaps query` prints a time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_us // 1_000_000)) + f".{t_us % 1_000_000:06d}Z"


def _sample(pid: int, t_us: int, v: dict[str, list[Any]], r: dict[str, Any]) -> Sample:
    """One Sample from its VMA rows (in vma_index order) and its range rows (in VMA, page order;
    numpy arrays, vma_start an Arrow array: never a Python object per range)."""
    import pyarrow.compute as pc

    pa, _, _ = _pyarrow()
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
    starts = pa.array([f"{x.start:x}" for x in vmas], pa.string()).take(pa.array(vi))
    if n and not pc.all(pc.equal(starts, r["vma_start"])).as_py():
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
