"""Rows of text made by numpy, for the machine formats of many rows (JSON of ranges and VMAs,
recordings' VMA lists): each row a few literal pieces and decimal numbers, the rows of a batch one
matrix of bytes, so that no Python string or int is formatted per row. Pure."""
from __future__ import annotations

import codecs
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np


# The machine formats of many VMAs: each row is a few literal pieces (one of a few texts per
# row) and numbers (decimal), the rows of a batch one matrix of bytes: no Python string or int
# to text per row. Every piece fills columns of the matrix, its unused bytes NUL (JSON text never
# holds a NUL), so that the rows are the matrix's bytes without the NULs.
@functools.cache
def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """str() of 0-9999 as four ASCII digits in one u32 each (bytes in memory order), '0'-padded;
    then the same without leading zeros (NUL instead; 0 all NUL), for a number's leading cell.
    The second table is the same but 0 shown as "0" and then a cell of NULs (a number not shown),
    for a number's last cell. Made on first use (no cost at import)."""
    i = np.arange(10_000)
    d = np.stack([i // 1000, i // 100 % 10, i // 10 % 10, i % 10], axis=1).astype(np.uint8) + np.uint8(ord("0"))
    lead = d.copy()
    lead[i[:, None] < np.array([1000, 100, 10, 1])] = 0
    last = lead.copy()
    last[0, 3] = ord("0")
    cells = np.concatenate((d, lead)).view(np.uint32).ravel()
    lasts = np.concatenate((d, last, np.zeros((1, 4), dtype=np.uint8))).view(np.uint32).ravel()
    return cells, lasts


def dec_digits(v: np.ndarray, shown: np.ndarray | None) -> np.ndarray:
    """str() of each u64, right-aligned and NUL-padded on the left (all NUL where not `shown`), as
    wide as the longest: an (n, width) uint8 matrix. Four digits at a time from a table (as u32
    cells), the leading cell's without its zeros."""
    x = np.array(v, dtype=np.uint64)  # a copy: divided in place
    if shown is not None:
        x[~shown] = 0
    width = len(str(int(x.max(initial=0))))
    cells = -(-width // 4)
    out = np.empty((len(x), cells), dtype=np.uint32)
    q = np.empty_like(x)
    t = np.empty_like(x)
    base = np.uint64(10_000)
    digits, lasts = _digit_tables()
    for k in range(cells - 1, -1, -1):
        np.floor_divide(x, base, out=q)
        np.subtract(x, np.multiply(q, base, out=t), out=t)
        t += (q == 0) * base  # the leading cell (or one before it: all NUL)
        if k == cells - 1:
            if shown is not None:
                t += ~shown * base
            out[:, k] = lasts[t]
        else:
            out[:, k] = digits[t]
        x, q = q, x
    return out.view(np.uint8)[:, cells * 4 - width:]  # no column of only NULs


def text_bytes(texts: Sequence[str]) -> np.ndarray:
    """ASCII texts (no NUL or MARK: JSON text escapes both) as a (len(texts), longest) uint8
    matrix, NUL-padded."""
    width = max(map(len, texts), default=0)
    if not width:
        return np.zeros((len(texts), 0), dtype=np.uint8)
    if any(MARK in t or "\0" in t for t in texts):
        raise ValueError("a text piece holds a NUL or the mark")
    return np.array([t.encode("ascii") for t in texts], dtype=f"S{width}").view(np.uint8).reshape(len(texts), -1)


MARK = "\x01"  # where a spliced text goes in the matrix's text (JSON text escapes control characters)
Piece = tuple[str, Any, "np.ndarray | None"]


def rows_text(pieces: Sequence[Piece], n: int) -> str:
    """The concatenation of n rows, each the pieces in order: ("text", texts, index) shows
    texts[index[i]] (ASCII, no NUL or MARK; index None: texts[0] in every row), ("number", u64
    values, shown) the decimal of values[i] where shown[i] (None: everywhere), ("splice", texts of
    each row, None) any text of each row's own. The texts and numbers are one matrix of bytes,
    a few columns per piece, picked out at once; long texts (a few per row) are spliced in by a join,
    cheaper than their bytes in the matrix."""
    if not n:
        return ""
    cols: list[np.ndarray] = []  # (n or 1, width) uint8
    spliced: list[Any] = []
    for kind, what, sel in pieces:
        if kind == "text":
            m = text_bytes(what)
            cols.append(m[:1] if sel is None else np.take(m, sel, axis=0))
        elif kind == "number":
            cols.append(dec_digits(what, sel))
        else:
            cols.append(_MARK_BYTE)
            spliced.append(what)
    width = sum(m.shape[1] for m in cols)
    out = np.empty((n, width), dtype=np.uint8)
    at = 0
    for m in cols:
        out[:, at:at + m.shape[1]] = m
        at += m.shape[1]
    b = out.ravel()
    text: str = codecs.ascii_decode(b[b != 0])[0]  # any buffer: no copy to bytes
    if not spliced:
        return text
    parts: list[str] = [""] * (len(spliced) * n * 2 + 1)
    parts[0::2] = text.split(MARK)
    lists = [t.tolist() if isinstance(t, np.ndarray) else list(t) for t in spliced]
    parts[1::2] = lists[0] if len(lists) == 1 else list(itertools.chain.from_iterable(zip(*lists)))
    return "".join(parts)


_MARK_BYTE = np.array([[ord(MARK)]], dtype=np.uint8)
