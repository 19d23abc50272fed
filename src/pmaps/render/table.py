"""Plain aligned tables (golden-testable, pipe-friendly) and CSV, from rows of cells."""
from __future__ import annotations

import codecs
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import numpy as np

from ..numeric import distinct
from ..safetext import csv_text as csv_text  # the renderers import these from here
from ..safetext import printable as printable
from ..safetext import unprintable as unprintable


def write_table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 0,
                footer: Sequence[Sequence[str]] = (), text_last: bool = False,
                lefts: Sequence[bool] | None = None) -> None:
    """Columns right-aligned except the first `left` ones (or those `lefts` marks); with
    text_last the last column is free text (a path), left-aligned after the others. A
    left-aligned last column is never padded."""
    allrows = [list(r) for r in (header, *rows, *footer)]
    if not allrows:
        return
    # One search over every cell; cell by cell only when some cell needs escaping.
    if unprintable("".join(c for r in allrows for c in r)):
        allrows = [list(map(printable, r)) for r in allrows]
    ncol = len(header)
    if lefts is None:
        lefts = [i < left or (text_last and i == ncol - 1) for i in range(ncol)]
    widths = [max(map(len, col)) for col in zip(*allrows)]
    # One format string for every row: a cell costs no Python call of its own.
    spec = " ".join("{}" if lefts[i] and i == ncol - 1 else f"{{:{'<' if lefts[i] else '>'}{widths[i]}}}"
                    for i in range(ncol))
    out.write("".join(spec.format(*r).rstrip() + "\n" for r in allrows))


def write_columns(out: TextIO, header: Sequence[str], cols: Sequence[list[str] | np.ndarray], left: int = 0,
                  footer: Sequence[Sequence[str]] = (), text_last: bool = False, last_sep: str = " ") -> None:
    """write_table's text from columns, one cell per row: a list of texts, or a matrix of
    character codes already padded (char_matrix, cell_matrix, hex_ranges; it is widened to the
    header and footer). The columns are padded as matrices and the lines decoded at once: no
    Python step per cell. With text_last the last column (a list) is free text, `last_sep`
    after the others' widest line."""
    ncol = len(header)
    last = ncol - 1 if text_last else ncol
    mats: list[np.ndarray] = []
    heads: list[list[str]] = [[] for _ in range(1 + len(footer))]  # the header and footer lines' cells
    for j in range(last):
        is_left = j < left
        ends = [printable(header[j]), *(printable(f[j]) for f in footer)]
        col = cols[j]
        if isinstance(col, list):
            col = [printable(c) for c in col] if unprintable("".join(col)) else col
            col = char_matrix(col, max(map(len, col), default=0), is_left)
        w = max(col.shape[1], *map(len, ends))
        mats.append(widen(col, w, is_left))
        for k, c in enumerate(ends):
            heads[k].append(c.ljust(w) if is_left else c.rjust(w))
    tails = []
    if text_last:
        tail = cols[last]
        assert isinstance(tail, list)
        tails = [printable(header[last]), *tail, *(f[last] for f in footer)]
        tails = [printable(c) for c in tails] if unprintable("".join(tails)) else tails
    n = max((len(m) for m in mats), default=len(tails) - 1 - len(footer))
    edge = [" ".join(h) for h in heads]  # the header line, then the footer lines
    if tails:
        edge = [e + last_sep + t for e, t in zip(edge, [tails[0], *tails[n + 1:]])]
    # The header line alone: a character beyond Latin-1 in it (watch's Δ) would make the whole
    # text a string of 2 bytes a character (CPython stores a str at its widest character's size).
    out.write(edge[0].rstrip() + "\n")
    out.write(matrix_text(mats, n, tails[1:n + 1] if tails else None, last_sep))
    out.write("".join(e.rstrip() + "\n" for e in edge[1:]))


def matrix_text(cols: Sequence[np.ndarray], n: int, tails: Sequence[str] | None = None, sep: str = " ") -> str:
    """The n lines of the column matrices side by side (a space between), each followed by `sep`
    and its tail (free text) when it has one, rstripped, as one text with a newline after each
    line. Where each line ends is found in numpy and the text picked out of the matrix at once;
    only the lines with a tail are strings of their own."""
    if not n:
        return ""
    width = sum(m.shape[1] for m in cols) + max(len(cols) - 1, 0)
    m = side_by_side(cols, n)
    body = m[:, :width]
    end = np.zeros(n, dtype=np.int64)
    # Every line's last column ends in ink (a right-aligned number, wss' and watch's tables): no
    # line is stripped, and the text is the whole matrix, its last column the newlines.
    full = bool(width) and m.dtype == np.uint8 and bool((body[:, width - 1] > 32).all())
    if full:
        end[:] = width
    elif width:
        # The last character that is not whitespace (str.rstrip's test) of each line.
        # Tested right to left into a C-ordered matrix: argmax's fast path for contiguous bool
        # rows (2x faster than argmax over a reversed view).
        rev = body[:, ::-1]
        if m.dtype == np.uint8 and not (body < 32).any():
            ink = np.empty((n, width), dtype=bool)
            np.greater(rev, 32, out=ink)
        else:
            ink = np.ascontiguousarray(~_whitespace(rev))
        back = np.argmax(ink, axis=1)  # 0 also when a line has no ink at all
        end = np.where(ink[np.arange(n), back], width - back, 0)
    tailed = np.zeros(0, dtype=np.int64)
    if tails is not None:
        tails = list(map(str.rstrip, tails))
        tailed = np.flatnonzero(np.fromiter(map(len, tails), dtype=np.int64, count=n))
        end[tailed] = width  # the tail follows the padded columns
    m[np.arange(n), end] = ord("\n")
    if full:
        picked = m  # every character of every row (C-ordered, as side_by_side made it)
    else:
        small = np.dtype(np.int16 if m.shape[1] < 1 << 15 else np.int64)  # a narrower comparison: 2.5x faster
        cols_at: np.ndarray = np.arange(m.shape[1], dtype=small)
        picked = m[cols_at <= end.astype(small)[:, None]]
    if m.dtype == np.uint8:
        text = codecs.ascii_decode(picked)[0]  # type: ignore[arg-type]  # any buffer: no copy to bytes first
    else:
        text = picked.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    if not len(tailed):
        return text
    assert tails is not None
    rows = tailed.tolist()
    if 8 * len(rows) < n:
        # A few lines with a tail (a watch frame of many anonymous VMAs): each goes in before
        # its line's newline, the text between copied as slices, not split into n lines.
        nl = (np.cumsum(end + 1) - 1)[tailed].tolist()  # where those lines' newlines are
        parts: list[str] = []
        prev = 0
        for at, r in zip(nl, rows):
            parts += (text[prev:at], sep, tails[r])
            prev = at
        parts.append(text[prev:])
        return "".join(parts)
    lines = text.split("\n")
    joined = map(str.__add__, map(lines.__getitem__, rows), map(sep.__add__, map(tails.__getitem__, rows)))
    list(map(lines.__setitem__, rows, joined))
    return "\n".join(lines)


@functools.cache
def _whitespace_codes() -> np.ndarray:
    """The code points str.isspace() takes as whitespace (all below U+3001)."""
    return np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _whitespace(m: np.ndarray) -> np.ndarray:
    """Which character codes are whitespace to str.rstrip."""
    if m.dtype == np.uint8:  # ASCII: space, \t-\r and \x1c-\x1f
        return (m == 32) | ((m >= 9) & (m <= 13)) | ((m >= 28) & (m <= 31))
    return np.isin(m, _whitespace_codes())


# -- columns as matrices of character codes ---------------------------------------------------
# A column of n cells padded to w characters is an (n, w) array of character codes: uint8 while
# every cell is ASCII, uint32 (code points, as Python counts characters) otherwise. Lines are
# the columns side by side, decoded at once: a table of 65,000 rows costs a few numpy passes.
_SPACE = 32


def char_matrix(texts: Sequence[str], width: int, left: bool) -> np.ndarray:
    """The texts (none longer than `width`) padded to `width`, left- or right-aligned, as a
    (len(texts), width) matrix of character codes."""
    n = len(texts)
    if not n or not width:
        return np.full((n, width), _SPACE, dtype=np.uint8)
    joined = "".join(texts)
    m: np.ndarray
    if joined.isascii():
        m = np.array(texts, dtype=f"S{width}").view(np.uint8).reshape(n, width)  # NUL-padded on the right
    else:
        m = np.array(texts, dtype=f"U{width}").view(np.uint32).reshape(n, width)
    if len(joined) == n * width:  # every text fills the width (perms): nothing to pad
        return m
    if "\0" in joined:
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    else:  # the padding is the only NUL
        lens = np.count_nonzero(m, axis=1)
    pos = np.arange(width)
    if left:
        return np.where(pos >= lens[:, None], m.dtype.type(_SPACE), m)
    shift = (width - lens)[:, None]
    src = np.take_along_axis(m, np.maximum(pos - shift, 0), axis=1)
    return np.where(pos >= shift, src, m.dtype.type(_SPACE))


def widen(m: np.ndarray, width: int, left: bool) -> np.ndarray:
    """A padded column matrix widened to `width` with spaces (on the right when left-aligned)."""
    if m.shape[1] >= width:
        return m
    pad = np.full((len(m), width - m.shape[1]), _SPACE, dtype=m.dtype)
    return np.hstack((m, pad) if left else (pad, m))


def cell_matrix(values: np.ndarray, fmt: Callable[[int], str], width: int = 0) -> np.ndarray:
    """fmt of each value of an int column, right-aligned to at least `width` and to the widest, as a
    matrix: each distinct value formatted and padded once, then gathered."""
    if not len(values):
        return np.zeros((0, width), dtype=np.uint8)
    uniq, inv = _codes(values)
    text = [fmt(x) for x in uniq.tolist()]
    w = max(width, max(map(len, text)))
    return np.take(char_matrix(text, w, left=False), inv, axis=0)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numeric.distinct of an int column; of a narrow one (sizes in pages: a few thousand apart)
    by counting, with no sort and no binary search."""
    v = np.asarray(values).ravel()
    lo, hi = int(v.min()), int(v.max())
    if hi - lo > 4 * len(v) + 4096:
        return distinct(v)
    off = v - lo
    seen = np.flatnonzero(np.bincount(off))
    code = np.zeros(hi - lo + 1, dtype=np.intp)
    code[seen] = np.arange(len(seen))
    return (seen + lo).astype(v.dtype), code[off]


def _hex_digits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 16 hex digits of each u64 (ASCII, most significant first) and how many f"{v:x}" shows."""
    v = np.ascontiguousarray(v, dtype=np.uint64)
    b = v.astype(">u8").view(np.uint8).reshape(len(v), 8)
    nib = np.empty((len(v), 16), dtype=np.uint8)
    nib[:, 0::2], nib[:, 1::2] = b >> 4, b & 15
    digits = nib + np.uint8(ord("0")) + (nib > 9) * np.uint8(ord("a") - ord("0") - 10)
    count = np.ones(len(v), dtype=np.int64)
    for k in range(1, 16):  # one more digit for each power of 16 reached
        count += v >= np.uint64(16**k)
    return digits, count


def hex_ranges(start: np.ndarray, end: np.ndarray, width: int = 0) -> np.ndarray:
    """f"{start:x}-{end:x}" of each pair of u64, left-aligned to `width` and to the longest, as
    a uint8 matrix. The rows are copied in groups of the same digit counts (a process's
    addresses have a few lengths), not one by one."""
    ds, ls = _hex_digits(start)
    de, le = _hex_digits(end)
    w = max(width, int((ls + le).max(initial=0)) + 1)
    out = np.full((len(ls), w), _SPACE, dtype=np.uint8)
    pair = ls * 17 + le
    for k in np.flatnonzero(np.bincount(pair)).tolist():
        a, z = divmod(k, 17)
        rows = np.flatnonzero(pair == k)
        if len(rows) == len(pair):  # one group (the usual case): slices, no gather
            out[:, :a], out[:, a], out[:, a + 1:a + 1 + z] = ds[:, 16 - a:], ord("-"), de[:, 16 - z:]
            break
        out[rows, :a] = ds[rows, 16 - a:]
        out[rows, a] = ord("-")
        out[rows, a + 1:a + 1 + z] = de[rows, 16 - z:]
    return out


def side_by_side(cols: Sequence[np.ndarray], n: int, sep: str = " ") -> np.ndarray:
    """The column matrices of n rows side by side, `sep` between them and a column after the
    last (for the newline matrix_text puts at each line's end): the lines as one matrix."""
    dtype = np.uint32 if any(m.dtype == np.uint32 for m in cols) else np.uint8
    gap = np.array([ord(c) for c in sep], dtype=dtype)
    width = sum(m.shape[1] for m in cols) + len(gap) * max(len(cols) - 1, 0) + 1
    out = np.full((n, width), _SPACE, dtype=dtype)
    at = 0
    for j, m in enumerate(cols):
        if j:
            out[:, at:at + len(gap)] = gap
            at += len(gap)
        out[:, at:at + m.shape[1]] = m
        at += m.shape[1]
    return out


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    import csv  # here: off the start-up of every text command

    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    # Text cells through csv_text: a process name or path is never a spreadsheet formula.
    w.writerows(["" if c is None else csv_text(c) if isinstance(c, str) else c for c in r] for r in rows)


