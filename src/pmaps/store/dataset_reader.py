"""Reading a fleet dataset back (docs/dataset.md): one host's samples of one process, as `pmaps diff
ROOT` and `pmaps heatmap ROOT` need them. Every file a batch at a time, checked before its rows
become Python, and capped as a recording is (store.codec): a crafted file is one line naming it.
The layout, schema and `pmaps query`'s tables are store/dataset.py's; writing is dataset_writer's."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadSnapshot, PmapsError
from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import Sample
from .codec import ADDR_LIMIT, MAX_META, MAX_ROWS, MAX_TEXT, PID_LIMIT, TIME_LIMIT, reason
from .dataset import (
    COLUMNS,
    RANGE_COLUMNS,
    RANGES_DIR,
    SCAN_ROWS,
    _open,
    _pyarrow,
    decode_known_text,
    iso_us,
    schema,
)
from .dataset_checks import Tree
from .recording import check_sample


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
# Samples `processes` keeps (one row each in Arrow, then a few Python objects: ~0.85 KB a sample
# at the peak, measured) before it refuses: about what a recording holds (its manifest's cap,
# MANIFEST_CAP, is over half a million samples), ~0.45 GB; a refusal peaks at ~0.4 GB whatever
# the dataset holds. A host's samples are all its processes' (`top --dataset` every minute on 300
# processes: ~430,000 a day), so --pid (and --start-ticks), pushed into the scan, narrow them.
MAX_SAMPLES = 1 << 19
PROC_KEYS = ["boot_id", "pid", "start_ticks", "time", "seq"]  # one sample of one process


def bounds() -> dict[str, tuple[int, int]]:
    """Value ranges of the identity and count columns (time in microseconds), as a recording's
    fields are checked."""
    return {"time": (0, TIME_LIMIT * 1_000_000 - 1), "seq": (0, 1 << 40), "pid": (1, PID_LIMIT - 1),
            "start_ticks": (0, (1 << 63) - 1), "ranges": (0, MAX_ROWS), "vma_index": (0, MAX_VMAS - 1)}


class TooManySamples(PmapsError):
    """More samples than `processes` reads (MAX_SAMPLES): a selection to narrow, not a damaged file."""

    def __init__(self, msg: str, count: int, path: str) -> None:
        super().__init__(msg, path=path)
        self.count = count


class DatasetReader:
    """Reads one host's partitions of a dataset (local path or pyarrow.fs URL) with pyarrow.

    It reads the columns diff and heatmap need (READS), as this version types them: any other
    column, one a newer pmaps added or not, is left alone; one an older file lacks reads as null
    (the sample's checks then say what is missing). A file that is not a readable dataset file, or
    whose column of READS has a type that does not widen to this version's (`unify`), is
    BadSnapshot, one line naming it.

    Its files are those dataset_checks.Tree finds and opens: no link, FIFO or device below ROOT,
    only the partitions pmaps writes (else BadSnapshot naming the path).

    Rows come from Arrow a batch at a time (SCAN_ROWS), each checked before it is kept (no null
    where pmaps always writes a value, UTF-8 text of a sane length, identities in range: BadSnapshot
    naming the file), and a sample's rows are counted as they come: past the caps above (or past
    the range rows the sample declares) it is corrupt, before its rows are converted to Python."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.tree = Tree(root)  # what is walked, checked and opened below ROOT (dataset_checks)
        self.fs, self.path = self.tree.fs, self.tree.path
        self._sets: dict[tuple[str, str], Any] = {}  # (host, table) -> dataset: footers read once

    def hosts(self) -> list[str]:
        """Host partition values (as written: partition_value of the node name), sorted."""
        return self.tree.hosts()

    def _files(self, host: str, table: str = "") -> list[Any]:
        return self.tree.parts(table, host)

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
                                        pre_buffer=not self.tree.local)
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

    def processes(self, host: str, pid: int | None = None, start_ticks: int | None = None) -> list[ProcSamples]:
        """The processes of a host (or those with this pid, and this start time), each with its
        samples in time order. The rows are grouped a batch at a time: memory is one batch and the
        samples' keys, at most MAX_SAMPLES of them (else TooManySamples, before any is Python)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        pa, _, _ = _pyarrow()
        where = None
        for c, v in (("pid", pid), ("start_ticks", start_ticks)):
            if v is not None:
                where = pads.field(c) == v if where is None else where & (pads.field(c) == v)
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
            if len(parts) > 1 and held > max(4 * SCAN_ROWS, 2 * len(parts[0])):  # many samples: merge what
                parts = [group(pa.concat_tables(parts), True)]  # is held, once it doubled (log-many merges)
                held = len(parts[0])
                self._count(held, host, pid)
        if len(parts) > 1:
            parts = [group(pa.concat_tables(parts), True)]
        self._count(len(parts[0]) if parts else 0, host, pid)
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

    def _count(self, n: int, host: str, pid: int | None) -> None:
        if n > MAX_SAMPLES:
            who = f"pid {pid} on host {host}" if pid is not None else f"host {host}"
            raise TooManySamples(f"{self.root}: {who} has more than {MAX_SAMPLES} samples (at least {n}): more "
                                 "than diff and heatmap read", n, self.root)

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
