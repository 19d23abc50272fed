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
import types
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import BadSnapshot, MissingExtra, PmapsError
from ..model import Known
from .codec import reason

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
PART_RE = re.compile(r"part-[0-9-]+\.parquet")  # a part file's name (fullmatch: no trailing newline)
PARTITION_KEYS = ("host", "date")  # from the path; a file column of either name is shadowed by it
TIME_UNITS = ("s", "ms", "us", "ns")  # coarse to fine: a coarser unit reads exactly in a finer one
SCAN_ROWS = 1 << 16  # rows the readers decode at a time (diff, heatmap and query's scans)
# Bytes of text a query's scan expands at a time: a batch whose strings (read as dictionaries)
# would take more is cut in pieces first (a 16 KB path on 65,536 rows would be 1 GB).
SCAN_TEXT = 16 << 20


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
          extra: bool = True, bounded: bool = False) -> Any:
    """One Arrow dataset over these files (pyarrow FileInfos, sorted; `top`: ROOT's path in `fs`,
    messages name files from there), reading as `unify` says (partition columns `keys`, when given,
    parsed from the paths under base_dir and appended); `bounded`: one that DuckDB scans a batch
    at a time (`bounded_class`).
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
    if not bounded:
        return pads.FileSystemDataset(frags, sch, fmt, fs)
    dset = bounded_class()(frags, sch, fmt, fs)
    dset.root, dset.top, dset.failure = root, top, None
    return dset


def arrow_tables(root: str, names: Iterable[str] = TABLES) -> tuple[dict[str, Any], int]:
    """(The dataset's tables named in `names` as pyarrow datasets by view name, the number of files
    of all): `samples` (ROOT/host=*/date=*/part-*.parquet) and `ranges` (the same under
    ROOT/_ranges/), each with its partition columns host (string) and date (date) last; a table
    without files is an empty one of its columns. The files are found as dataset_checks.Tree
    says (one recursive listing of an object store; locally a walk that follows no link below
    ROOT, files opened the same way: a link, a FIFO or a partition pmaps does not write is
    BadSnapshot) and are those the writer names (not dot-files, not temp files). Each table
    reads as the union of its files' schemas (`unify`): this version's columns, then any a newer
    pmaps added; NULL where a file lacks a column (an older or a newer writer's). DuckDB scans
    them a batch at a time (`bounded_class`)."""
    from .dataset_checks import Tree

    pa, _, _ = _pyarrow()
    tree = Tree(root)
    path = tree.path
    keys = pa.schema([("host", pa.string()), ("date", pa.date32())])
    out = {}
    nfiles = 0
    for name, table, cols in (("samples", "", COLUMNS), ("ranges", RANGES_DIR, RANGE_COLUMNS)):
        files = tree.parts(table)
        nfiles += len(files)
        if name not in names:
            continue  # listed, but neither its footers nor its files' types read
        if not files:
            out[name] = pa.unify_schemas([schema(cols), keys]).empty_table()
            continue
        base = "/".join([path.rstrip("/"), *([table] if table else [])])
        out[name] = _open(tree.fs, root, path, files, base, schema(cols), keys, bounded=True)
    return out, nfiles


# DuckDB scans a registered dataset through `type(dataset).scanner(dataset, columns=, filter=)`,
# then that scanner's to_reader() (duckdb's python package, src/arrow/arrow_array_stream.cpp,
# PythonTableArrowArrayStreamFactory::Produce): bounded_class's datasets read there. pyarrow's own
# scan decodes each row group whole, whatever its batch_size: a file of 4 M copies of one VMA row
# (0.6 MB) made `SELECT * FROM samples LIMIT 5` take 1.8 GB, 50 M copies of a range row (2.6 MB)
# `sum(count)` 2.0 GB (tests/test_dataset_hostile.py holds the query to an address-space limit).
_BOUNDED: list[Any] = []


def bounded_class() -> Any:
    """pyarrow's FileSystemDataset whose scanner() reads each file's row groups (those the filter's
    statistics can match) SCAN_ROWS rows at a time with pyarrow.parquet's batch reader, text as
    dictionaries expanded SCAN_TEXT bytes at a time (`_scan_batches`), then filters and projects
    them as pyarrow's scan would (a few small files at once: one plan per SCAN_ROWS rows): a
    query's memory is DuckDB's and a batch, whatever a file's row groups hold. DuckDB pulls the
    reader: no read-ahead thread is left running when a LIMIT stops the query or the process
    exits. An error there is kept in the dataset's `failure` (DuckDB's message of it is a
    traceback): `pmaps query` reports that one."""
    if not _BOUNDED:
        import pyarrow.dataset as pads

        class Bounded(pads.FileSystemDataset):
            def scanner(self, columns: list[str] | None = None, filter: Any = None, **_: Any) -> Any:
                names = list(self.schema.names if columns is None else columns)
                reader = lambda: _reader(self, names, filter)  # DuckDB's use; to_table() is pyarrow's
                return types.SimpleNamespace(to_reader=reader, to_batches=lambda: iter(reader()),
                                             to_table=lambda: reader().read_all())

        _BOUNDED.append(Bounded)
    return _BOUNDED[0]


def _reader(dset: Any, names: list[str], where: Any) -> Any:
    """The rows of `dset` that match `where`, these columns: a pull-based RecordBatchReader."""
    pa, _, _ = _pyarrow()
    need = names + [c for c in (_fields(where, dset.schema) if where is not None else []) if c not in names]

    def filtered(held: list[Any]) -> Iterator[Any]:
        t = pa.Table.from_batches(held)
        yield from (t if where is None else t.filter(where)).select(names).to_batches()

    def batches() -> Iterator[Any]:
        held: list[Any] = []
        rows = size = 0
        for b in _scan_batches(dset, need, where):
            held.append(b)
            rows, size = rows + len(b), size + b.nbytes
            if rows >= SCAN_ROWS or size >= SCAN_TEXT:
                yield from filtered(held)
                held, rows, size = [], 0, 0
        if held:
            yield from filtered(held)

    return pa.RecordBatchReader.from_batches(pa.schema([dset.schema.field(c) for c in names]), batches())


def _fields(where: Any, sch: Any) -> list[str]:
    """The columns of `sch` a filter expression reads: those without which it does not bind."""
    pa, _, _ = _pyarrow()
    import pyarrow.dataset as pads

    out = []
    for i, f in enumerate(sch):
        try:
            pads.dataset(sch.remove(i).empty_table()).scanner(filter=where)
        except pa.ArrowException:
            out.append(f.name)
    return out


def _scan_batches(dset: Any, need: list[str], where: Any) -> Iterator[Any]:
    """The rows of `dset`'s row groups whose statistics can match `where`, these columns typed as
    its schema says (`_typed`), a batch of at most SCAN_ROWS rows (and SCAN_TEXT bytes of text) at
    a time: a file whose chosen row groups hold at most SCAN_ROWS rows (by its footer) read whole,
    a larger one with the batch reader. One file after the other: on threads, the Python around
    each read (many small files) only made the GIL busier. BadSnapshot naming the file (also kept
    in dset.failure) when one cannot be read."""
    pa, pq, _ = _pyarrow()
    import pyarrow.dataset as pads

    def is_text(t: Any) -> bool:  # text, or a dictionary of it: read as a dictionary
        t = t.value_type if pa.types.is_dictionary(t) else t
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

    for frag in dset.get_fragments():
        name = str(frag.path)[len(dset.top.rstrip("/")) + 1:]
        try:
            groups = [g.id for g in (frag if where is None else frag.subset(where, schema=dset.schema)).row_groups]
            if not groups:
                continue
            keys = pads.get_partition_keys(frag.partition_expression)  # the path's: a file column is shadowed
            phys = frag.physical_schema
            cols = [c for c in need if c in phys.names and c not in keys]
            text = [c for c in cols if is_text(phys.field(c).type)]
            with dset.filesystem.open_input_file(frag.path) as f:
                pf = pq.ParquetFile(f, metadata=frag.metadata, read_dictionary=text,
                                    pre_buffer=dset.filesystem.type_name in OBJECT_STORES)
                if sum(frag.metadata.row_group(g).num_rows for g in groups) <= SCAN_ROWS:
                    got = pf.read_row_groups(groups, columns=cols, use_threads=False).to_batches()
                else:
                    got = pf.iter_batches(batch_size=SCAN_ROWS, row_groups=groups, columns=cols, use_threads=False)
                for batch in got:
                    for piece in _text_pieces(batch, text):
                        yield _typed(piece, dset.schema, need, keys)
        except Exception as e:
            if isinstance(e, (pa.ArrowException, OSError, KeyError, ValueError)) and not isinstance(e, PmapsError):
                why = (str(e).strip().splitlines() or [type(e).__name__])[0].split("': ", 1)[-1][:200]
                e = BadSnapshot(f"{dset.root}: corrupt dataset file {name} ({why})", path=dset.root)
            dset.failure = e
            raise e from None


def _text_pieces(batch: Any, text: list[str]) -> Iterator[Any]:
    """The batch, cut so that its text columns (dictionaries) expand to at most SCAN_TEXT bytes a
    piece (or one row: its value is in memory already, in its dictionary)."""
    import pyarrow.compute as pc

    dicts = [batch.column(c) for c in text if hasattr(batch.column(c), "dictionary") and len(batch)]
    if sum(pc.max(pc.binary_length(d.dictionary)).as_py() or 0 for d in dicts) * len(batch) <= SCAN_TEXT:
        yield batch  # most batches: no row can take more
        return
    ends = np.cumsum(sum(pc.take(pc.binary_length(d.dictionary), d.indices).fill_null(0).to_numpy().astype(np.int64)
                         for d in dicts))
    start = 0
    while start < len(batch):
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + SCAN_TEXT, "right")))
        yield batch.slice(start, stop - start)
        start = stop


def _typed(batch: Any, sch: Any, need: list[str], keys: dict[str, Any]) -> Any:
    """A batch of a file as a record batch of the columns `need`, typed as `sch` says: partition
    columns from the path, a column the file lacks null, text expanded, a narrower type widened
    (`unify`); no column: one of nulls, for the rows' count."""
    pa, _, _ = _pyarrow()
    n = len(batch)
    cols = []
    for c in need:
        want = sch.field(c).type
        if c in keys:
            col = pa.repeat(pa.scalar(keys[c], want), n)
        elif c in batch.schema.names:
            col = batch.column(c)
            col = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
            col = col if col.type == want else col.cast(want)
        else:
            col = pa.nulls(n, want)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols or [pa.nulls(n)], names=need or ["_"])


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


def iso_us(t_us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC, as `pmaps query` prints a time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_us // 1_000_000)) + f".{t_us % 1_000_000:06d}Z"
