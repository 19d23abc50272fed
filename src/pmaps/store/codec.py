"""The one codec of what every pmaps file stores besides its columns: VMAs and Known as JSON, and
numpy columns plus a JSON document in one .npz (snapshots and system scans). Pure.

Decoding is defensive: the bytes may come from anyone. Every size is checked against what the
file's own headers declare and a cap before anything is inflated, and every field against its
type and range, so that a corrupt file is one BadSnapshot line, never a traceback or a memory bomb.
"""
from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np

from ..kernel.maps import LEN_MASK, Vma, VmaTable, digit_windows, read_digits
from ..model import Known
from ..numeric import distinct
from ..textrows import Piece, rows_text

ADDR_LIMIT = 1 << 64  # VMAs of a 64-bit address space
U64_MAX = ADDR_LIMIT - 1  # a VMA's start, end, offset and inode are the kernel's u64 values (VmaTable's columns)
PID_LIMIT = 1 << 22  # PID_MAX_LIMIT on 64-bit (include/linux/threads.h)
TIME_LIMIT = 1 << 40  # seconds since the epoch: anything past this is not a time pmaps wrote
MAX_ROWS = 1 << 27  # pages or ranges in one file (a 512 GiB process of 4 KiB pages)
MAX_META = 64 << 20  # bytes of JSON metadata (65530 VMAs of max_map_count take ~8 MB)
MAX_TEXT = 4096  # characters of a comm, a path, a perms or dev field
DEFLATE_MAX_RATIO = 1100  # deflate cannot expand more than 1032:1 (zlib's tech notes): above, the header lies
# What a malformed file can raise while it is decoded: every reader turns these into BadSnapshot.
# (NotImplementedError: zipfile raises it for an unknown compression method in a mangled header.)
DECODE_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, OverflowError,
                 UnicodeDecodeError, zipfile.BadZipFile, zlib.error, RecursionError, MemoryError,
                 IndexError, NotImplementedError, struct.error)


def reason(err: BaseException) -> str:
    """An error's text as one short line, for a BadSnapshot message (pyarrow's span lines)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off while a file's JSON is parsed and checked: a VMA list of 65,000
    VMAs is 65,000 lists, and the collections their making sets off walk every object of the
    process again and again (json.loads of one: 80 ms, 35 ms without). JSON makes no cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def loads_json(data: bytes) -> Any:
    """JSON from bytes (ValueError on malformed, too deep or non-UTF-8 text)."""
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def loads_json_vmas(data: bytes) -> Any:
    """loads_json(data) of a document whose last key is "vmas", as pmaps writes snapshots: when its
    text is exactly vmas_json's of a table whose fields pass decode_vma_table's checks, "vmas" is
    that table, read by numpy (no list per VMA: json.loads and the checks of 65,000 VMAs' lists
    take ~70 ms). Anything else is parsed by loads_json, its "vmas" left to decode_vma_table."""
    text = data.decode("utf-8")
    key = '"vmas": '
    at = text.rfind(key + "[")
    if at > 0 and text.endswith("}") and (table := _canonical_vmas(text[at + len(key):-1])) is not None:
        # The head with an empty list in the place of the VMAs: if it parses, the text with the
        # VMAs (a JSON value) parses the same around them; the head's last pair says whose they are.
        last: list[list[tuple[str, Any]]] = []

        def pairs(kv: list[tuple[str, Any]]) -> dict[str, Any]:
            last[:] = [kv]  # the outermost object is the last one closed
            return dict(kv)

        try:
            head = json.loads(text[:at + len(key)] + "[]}", object_pairs_hook=pairs)
        except (ValueError, RecursionError):  # said by loads_json below, at the same place
            head = None
        if isinstance(head, dict) and last and last[0][-1] == ("vmas", []):
            head["vmas"] = table
            return head
    return loads_json(data)


def _canonical_vmas(v: str) -> VmaTable | None:
    """The table whose vmas_json is exactly `v`, if its fields pass decode_vma_table's checks; else
    None. Read by positions: with no backslash every quote opens or closes a string, six a row
    ([S, E, "perms", O, "dev", I, "path"]), and the first comma of a row ends its start;
    whatever this reads is then written back by vmas_json and compared with `v`, so a text it
    misreads is refused, never mistaken."""
    if not v.isascii() or "\\" in v or not v.startswith("[[") or not v.endswith('"]]'):
        return None
    raw = v.encode("ascii")
    buf = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(buf == 34)
    n = len(quotes) // 6
    if n < 1 or len(quotes) != 6 * n:
        return None
    q = quotes.reshape(n, 6)
    row = np.empty(n, dtype=np.int64)  # where each row's start begins: after "[[", then after '"], ['
    row[0] = 2
    row[1:] = q[:-1, 5] + 5
    commas = np.flatnonzero(buf == 44)
    k = np.searchsorted(commas, row)
    if k[-1] >= len(commas):
        return None
    sep = commas[k]  # "S, E": no string before the first comma of a row
    win = digit_windows(raw)
    nums = [_decimals(win, v, a, b) for a, b in ((row, sep), (sep + 2, q[:, 0] - 2), (q[:, 1] + 3, q[:, 2] - 2),
                                                (q[:, 3] + 3, q[:, 4] - 2))]
    start, end, offset, inode = nums
    if start is None or end is None or offset is None or inode is None:
        return None
    spans = [(q[:, 0] + 1, q[:, 1]), (q[:, 2] + 1, q[:, 3]), (q[:, 4] + 1, q[:, 5])]
    (pa, pb), (da, db), (na, nb) = spans
    if ((pb - pa) > 8).any() or ((db - da) > 32).any() or ((nb - na) > MAX_TEXT).any():
        return None
    if ((start | end) & np.uint64(0xFFF)).any() or not (start < end).all() or not (end[:-1] <= start[1:]).all():
        return None
    kinds = {}
    short = []
    for name, a, b in (("perms", pa, pb), ("dev", da, db)):
        got = _short_strings(buf, a, b)
        if got is None:
            short.append([v[x:y] for x, y in zip(a.tolist(), b.tolist())])
        else:
            kinds[name] = got
            short.append(np.array(got[0], dtype=object)[got[1]].tolist())
    path = [""] * n
    for i in np.flatnonzero(nb > na).tolist():
        path[i] = v[na[i]:nb[i]]
    table = VmaTable.of_fields(start, end, short[0], offset, short[1], inode, path, kinds)
    if "".join(vmas_json(table)) != v:
        return None
    return table


def _short_strings(buf: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[list[str], np.ndarray] | None:
    """The strings buf[a:b] of at most 8 bytes (perms, dev) as (distinct values, index of each
    row's): each read as one u64 (a gather from a u64 view at every byte offset, the bytes past
    its end masked off), each distinct value decoded once. None when one is longer."""
    lens = b - a
    if not len(a) or int(lens.max()) > 8 or int(a.max()) > len(buf) - 8:
        return None
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # unaligned, overlapping
    uniq, inv = distinct(words[a] & LEN_MASK[lens])
    return [int(u).to_bytes(8, "little").rstrip(b"\0").decode("ascii") for u in uniq.tolist()], inv


def _decimals(win: np.ndarray, v: str, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """The decimal numbers v[a:b] per row (kernel.maps' read_digits; the few of 20 digits, past its 19,
    as ints: the vsyscall VMA's addresses), None when one is not."""
    long = np.flatnonzero(b - a > 19)
    if len(long) > 64:
        return None
    cut = b.copy()
    cut[long] = a[long] + 1  # read by int() below
    out = read_digits(win, a, cut, False)
    if out is None:
        return None
    for i in long.tolist():
        text = v[a[i]:b[i]]
        if not (text.isdigit() and len(text) <= 20 and int(text) <= U64_MAX):
            return None
        out[i] = int(text)
    return out


def inflate(data: bytes, limit: int = MAX_META) -> bytes:
    """zlib data of at most `limit` bytes once inflated (ValueError beyond: a bomb)."""
    d = zlib.decompressobj()
    out = d.decompress(data, limit)
    if d.unconsumed_tail or not d.eof:
        raise ValueError(f"compressed metadata inflates past {limit} bytes or is truncated")
    return out


def as_int(v: object, what: str, lo: int = 0, hi: int = ADDR_LIMIT) -> int:
    """An integer field (bool and float refused) in [lo, hi]."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what} is not an integer")
    if not lo <= v <= hi:
        raise ValueError(f"{what} out of range")
    return v


def as_float(v: object, what: str, lo: float = 0.0, hi: float = float(TIME_LIMIT)) -> float:
    """A finite number field in [lo, hi] (inf, NaN and 1e300 refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} is not a number")
    try:
        f = float(v)
    except OverflowError:
        raise ValueError(f"{what} out of range") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise ValueError(f"{what} out of range")
    return f


def as_str(v: object, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what} is not a string")
    if len(v) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return v


def encode_vmas(vmas: list[Vma] | VmaTable) -> list[Sequence[object]]:
    """[start, end, perms, offset, dev, inode, path] per VMA (JSON writes a tuple as a list: a
    table's columns are zipped, without a `Vma` object per VMA)."""
    if isinstance(vmas, VmaTable):
        t = vmas
        return list(zip(t.start.tolist(), t.end.tolist(), t.perms, t.offset.tolist(), t.dev, t.inode.tolist(), t.path))
    return [[v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path] for v in vmas]


def vmas_json(table: VmaTable, rows: int = 8192) -> Iterator[str]:
    """json.dumps(encode_vmas(table)) in pieces of `rows` VMAs, made by numpy (textrows.rows_text):
    each distinct string (perms, dev, path) is encoded by json.dumps once (ASCII: it escapes the
    rest) and each row is those and its numbers' digits. (json.dumps of the rows as tuples took
    ~45 ms for 65,000 VMAs, and ~15 MB at once.)"""
    t = table
    yield "["
    if len(t):
        perms, dev, paths = t.kinds("perms"), t.kinds("dev"), _path_kinds(t)
        perms_text = [json.dumps(v) + ", " for v in perms[0]]
        dev_text = [json.dumps(v) + ", " for v in dev[0]]
        path_text = [json.dumps(v) + "]" for v in paths[0]]
        for lo in range(0, len(t), rows):
            s = slice(lo, lo + rows)
            n = len(t.start[s])
            opening = np.zeros(n, dtype=np.int64)
            opening[0] = lo == 0  # "[" before the first row, ", [" before every other
            yield rows_text([("text", [", [", "["], opening), ("number", t.start[s], None), _COMMA,
                             ("number", t.end[s], None), _COMMA, ("text", perms_text, perms[1][s]),
                             ("number", t.offset[s], None), _COMMA, ("text", dev_text, dev[1][s]),
                             ("number", t.inode[s], None), _COMMA,
                             ("splice", [path_text[k] for k in paths[1][s].tolist()], None)], n)
    yield "]"


_COMMA: Piece = ("text", [", "], None)


def _path_kinds(t: VmaTable) -> tuple[list[str], np.ndarray]:
    """The distinct paths and the index of each VMA's among them: only the named VMAs' paths
    are looked up (a process of many anonymous VMAs has few)."""
    named = np.flatnonzero(t.named)
    idx = np.zeros(len(t), dtype=np.int64)
    if not len(named):
        return [""], idx
    paths = t.path
    picked = list(map(paths.__getitem__, named.tolist()))
    pos = {p: i for i, p in enumerate(dict.fromkeys(["", *picked]))}
    idx[named] = np.fromiter(map(pos.__getitem__, picked), dtype=np.int64, count=len(picked))
    return list(pos), idx


def _table_checked_at_once(raw: list[Any]) -> VmaTable | None:
    """decode_vma_table's checks as passes over whole columns (numpy for the numbers: 65,000 VMAs
    took ~0.15 s checked one by one), or None when one fails. JSON makes only exact ints (or bools,
    refused by the type test) and strs. The types are tested as the set of each column's (map(type)
    in C: a generator's test per field cost ~60 ms for 65,000 VMAs)."""
    if set(map(type, raw)) - {list} or set(map(len, raw)) - {7}:
        return None
    if not raw:
        return VmaTable.of_vmas([])
    # The fields in one flat list, each column a slice of it (zip(*raw) makes an iterator per VMA:
    # 65,000 objects for the cyclic collector, ~60 ms).
    flat = list(itertools.chain.from_iterable(raw))
    a, b, p, o, d, ino, n = (flat[k::7] for k in range(7))
    ints = (a, b, o, ino)
    if any(set(map(type, col)) != {int} for col in ints):
        return None
    if any(set(map(type, col)) != {str} or max(map(len, col)) > lim for col, lim in ((p, 8), (d, 32), (n, MAX_TEXT))):
        return None
    try:  # numpy refuses a negative int or one past 2**64 - 1 for uint64: the fields' range
        start, end, offset, inode = (np.array(col, dtype=np.uint64) for col in ints)
    except (OverflowError, ValueError):
        return None
    if ((start | end) & np.uint64(0xFFF)).any() or not (start < end).all() or not (end[:-1] <= start[1:]).all():
        return None
    return VmaTable.of_fields(start, end, p, offset, d, inode, n)


def _vmas_checked_at_once(raw: list[Any]) -> list[Vma] | None:
    """_table_checked_at_once's VMAs as objects."""
    table = _table_checked_at_once(raw)
    return None if table is None else table.vmas


def decode_vma_table(raw: object) -> VmaTable:
    """VMAs as stored ([start, end, perms, offset, dev, inode, path] lists), as columns (no `Vma`
    object per VMA); ValueError unless they are sorted, disjoint, page-aligned and inside the
    64-bit address space, as maps lists them."""
    if isinstance(raw, VmaTable):  # read and checked by loads_json_vmas
        return raw
    if not isinstance(raw, list):
        raise TypeError("vmas is not a list")
    fast = _table_checked_at_once(raw)
    if fast is not None:
        return fast
    return VmaTable.of_vmas(_vmas_one_by_one(raw))


def decode_vmas(raw: object) -> list[Vma]:
    """decode_vma_table's VMAs as objects."""
    return decode_vma_table(raw).vmas


def _vmas_one_by_one(raw: list[Any]) -> list[Vma]:
    """Some check failed: VMA by VMA, to say which one and why."""
    vmas = []
    prev_end = 0
    for i, x in enumerate(raw):
        if not isinstance(x, list) or len(x) != 7:
            raise ValueError(f"VMA {i} is not a list of 7 fields")
        a, b, p, o, d, ino, n = x
        v = Vma(as_int(a, f"VMA {i} start", hi=U64_MAX), as_int(b, f"VMA {i} end", hi=U64_MAX),
                as_str(p, f"VMA {i} perms", 8), as_int(o, f"VMA {i} offset", hi=U64_MAX),
                as_str(d, f"VMA {i} dev", 32), as_int(ino, f"VMA {i} inode", hi=U64_MAX),
                as_str(n, f"VMA {i} path"))
        if not (prev_end <= v.start < v.end <= ADDR_LIMIT) or (v.start | v.end) & 0xFFF:
            raise ValueError(f"VMA {i} is out of order or not a valid address range")
        prev_end = v.end
        vmas.append(v)
    return vmas


def encode_known(known: Known) -> dict[str, bool]:
    return known.to_dict()


def decode_known(raw: object) -> Known:
    if not isinstance(raw, dict):
        raise TypeError("known is not an object")
    fields = set(Known.__dataclass_fields__)
    for k, v in raw.items():
        if k not in fields or not isinstance(v, bool):
            raise ValueError(f"known has a bad entry {str(k)[:40]!r}")
    return Known(**raw)


# Deflate levels of pack_npz's members, measured on a snapshot of 65,531 VMAs: the page columns
# compress to within 7% of level 6 at level 1 in an eighth of the time (8 vs 67 ms); the VMA list's
# JSON needs level 5 to be as small as level 6 (412 KB: level 1 leaves 621 KB), in half its time.
COLUMN_LEVEL = 1
META_LEVEL = 5


def pack_npz(meta: dict[str, Any] | str, columns: dict[str, np.ndarray | None]) -> bytes:
    """Columns as arrays (None left out) and `meta` (a dict, or its JSON text) as a JSON byte
    array, deflated: the members numpy.savez_compressed writes, at levels chosen per member."""
    text = meta if isinstance(meta, str) else json.dumps(meta)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        members = [("meta", np.frombuffer(text.encode(), dtype=np.uint8), META_LEVEL)]
        members += [(k, v, COLUMN_LEVEL) for k, v in columns.items() if v is not None]
        for name, arr, level in members:
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arr), allow_pickle=False)
            z.writestr(name + ".npy", npy.getbuffer(), compresslevel=level)
    return buf.getvalue()


INCREASING_MAX_RATIO = 16  # a strictly increasing u64 column deflates ~5:1 (page numbers in runs)
READ_CHUNK = 16 << 20  # a member is inflated into its array this much at a time: no second copy


def _npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> tuple[int, np.dtype[Any]]:
    """(rows, dtype) of one .npy member, from its header alone: the zip's declared size must be
    plausible for its compressed size, and the header's shape and dtype must account for exactly
    that size. Only 1-D integer and bool arrays are taken (never pickles)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # numpy writes only these
        raise ValueError(f"member {info.filename} has compression method {info.compress_type}")
    if info.file_size > cap or info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 4096:
        raise ValueError(f"member {info.filename} declares {info.file_size} bytes: too large")
    with z.open(info) as f:
        n, dtype = _read_header(f, info)
    return n, dtype


def _read_header(f: IO[bytes], info: zipfile.ZipInfo) -> tuple[int, np.dtype[Any]]:
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=4096)
    elif version == (2, 0):
        shape, _fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=4096)
    else:
        raise ValueError(f"member {info.filename}: npy version {version}")
    if len(shape) != 1 or dtype.kind not in "uib" or dtype.itemsize > 8 or dtype.hasobject:
        raise ValueError(f"member {info.filename} is not a 1-D integer array ({dtype}, shape {shape})")
    n = shape[0]
    if not 0 <= n <= MAX_ROWS or f.tell() + n * dtype.itemsize != info.file_size:
        raise ValueError(f"member {info.filename}: its header does not match its size")
    return n, dtype


def _npy_member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One .npy member (its header checked by _npy_header), inflated straight into its array."""
    with z.open(info) as f:
        n, dtype = _read_header(f, info)
        out = np.empty(n, dtype=dtype)
        view = out.view(np.uint8).data  # any byte order: the bytes as stored
        got = 0
        while got < len(view):
            chunk = f.read(min(READ_CHUNK, len(view) - got))
            if not chunk:
                break
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
    if got != len(view):
        raise ValueError(f"member {info.filename} is truncated")
    return out


def unpack_npz(data: bytes, schema: str, vmas: bool = False, increasing: str | None = None
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, columns) of a pack_npz file; ValueError when the schema is not `schema`. Columns are
    checked to be 1-D integer arrays of one length from their headers before any is inflated, and
    the `increasing` column (a snapshot's page numbers) is inflated first and must rise strictly:
    it cannot deflate much (INCREASING_MAX_RATIO), so it bounds what a small file makes the others
    inflate to (a crafted 7 MB file of zero-filled members took 12.8 GB before it was refused).
    With `vmas`, meta's "vmas" may come as a VmaTable (loads_json_vmas)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        if len(infos) > 16 or len({i.filename for i in infos}) != len(infos):
            raise ValueError("not the members of a pmaps file")
        if sum(i.file_size for i in infos) > 8 * MAX_ROWS * 8:
            raise ValueError("members declare more data than a pmaps file holds")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename[:40]!r}")
        rows = {i.filename[:-4]: _npy_header(z, i, MAX_META if i.filename == "meta.npy" else 8 * MAX_ROWS)[0]
                for i in infos}
        col_rows = {k: n for k, n in rows.items() if k != "meta"}
        if len(set(col_rows.values())) > 1:
            raise ValueError("columns of different lengths: " + ", ".join(f"{k} {n}" for k, n in col_rows.items()))
        order = sorted(infos, key=lambda i: i.filename[:-4] != increasing)  # that one first
        arrays = {}
        for info in order:
            name = info.filename[:-4]
            if name == increasing and info.file_size > INCREASING_MAX_RATIO * info.compress_size + 4096:
                raise ValueError(f"column {name} deflates more than an increasing column can")
            arrays[name] = a = _npy_member(z, info)
            if name == increasing and len(a) > 1 and not bool((a[1:] > a[:-1]).all()):
                raise ValueError("pages are not in address order")
    if "meta" not in arrays:
        raise ValueError("no metadata")
    meta = (loads_json_vmas if vmas else loads_json)(arrays.pop("meta").astype(np.uint8).tobytes())
    cols = arrays
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        raise ValueError(f"schema {str(meta.get('schema'))[:40] if isinstance(meta, dict) else None!r}, not {schema}")
    n = len(cols["vpn"]) if "vpn" in cols else 0
    for k, v in cols.items():
        if len(v) != n:
            raise ValueError(f"column {k} has {len(v)} rows, expected {n}")
    return meta, cols
