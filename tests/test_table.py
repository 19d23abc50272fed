"""render.table: the column writer (matrices of character codes) against write_table, cell by cell."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest

from pmaps.render.table import (
    char_matrix,
    hex_ranges,
    matrix_text,
    side_by_side,
    write_columns,
    write_table,
)


def rows_of(mats: list[np.ndarray], n: int) -> list[str]:
    """The lines of side_by_side's matrix, unstripped."""
    return ["".join(map(chr, r)) for r in side_by_side(mats, n)[:, :-1].tolist()]


ODD = ["", "é", "x\udcffy", "\x1b[31m", "a\u202eb", "sp ace  ", "   ", "tab\tx", "nul\0", "\0", "\u3000", "日本",
       "x\xa0", "\u2003 ", "y\u3000 \xa0"]


def _texts(rng: random.Random, n: int, odd: bool) -> list[str]:
    pool = ["0", "4.0K", "12M", "rw-p", "r--s", "-8.0K", "+1.5G", "7f00-7f01", "", "total"] + (ODD if odd else [])
    return [rng.choice(pool) for _ in range(n)]


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_write_columns_is_write_table(odd, n):
    """write_columns' text is write_table's (odd: control, non-ASCII and whitespace characters)."""
    rng = random.Random(n * 2 + odd)
    ncol = 5
    header = ["ADDRESS", "ΔRSS", "B", "C", "MAPPING"]
    cols = [_texts(rng, n, odd) for _ in range(ncol)]
    footer = [_texts(rng, 1, odd)[0] for _ in range(ncol)]
    for left in (0, 2):
        for text_last in (False, True):
            want, got = io.StringIO(), io.StringIO()
            write_table(want, header, [list(r) for r in zip(*cols)], left=left, footer=[footer], text_last=text_last)
            # The same cells, some columns given as matrices (of their printable text, as callers pass them).
            mats: list[list[str] | np.ndarray] = list(cols)
            if not odd:
                mats[1] = char_matrix(cols[1], max(map(len, cols[1]), default=0), left=left > 1)
                mats[2] = char_matrix(cols[2], max(map(len, cols[2]), default=0), left=left > 2)
            write_columns(got, header, mats, left=left, footer=[footer], text_last=text_last)
            assert got.getvalue() == want.getvalue()


def test_char_matrix_any_text():
    texts = ["a", "", "é\udcff", "\0x", "x\0", "日本語"]
    for left in (True, False):
        m = char_matrix(texts, 4, left)
        assert m.dtype == np.uint32
        rows = rows_of([m], len(texts))
        assert rows == [t.ljust(4) if left else t.rjust(4) for t in texts]
    m = char_matrix(["ab", "", "a\0"], 3, False)
    assert m.dtype == np.uint8 and rows_of([m], 3) == [" ab", "   ", " a\0"]


def test_hex_ranges():
    rng = np.random.default_rng(0)
    edge = np.array([0, 1, 15, 16, 2**64 - 1, 2**63, 0x400000], dtype=np.uint64)
    a = np.concatenate([edge, rng.integers(0, 2**64, 2000, dtype=np.uint64)])
    b = a[::-1].copy()
    rows = rows_of([hex_ranges(a, b, 40)], len(a))
    assert rows == [f"{x:x}-{y:x}".ljust(40) for x, y in zip(a.tolist(), b.tolist())]
    assert hex_ranges(a[:0], b[:0], 7).shape == (0, 7)


def test_matrix_text_is_rstripped_lines():
    """matrix_text: each line's columns, `sep` and tail, rstripped as str.rstrip would, whatever
    the characters (control and Unicode whitespace among them)."""
    rng = random.Random(5)
    pool = ["a", " ", "\t", "\x0b", "\x1c", "\x01", "\xa0", "\u3000", "é", "z "]
    for ascii_only in (True, False):
        chars = [c for c in pool if c.isascii()] if ascii_only else pool
        cols = [["".join(rng.choice(chars) for _ in range(rng.randint(0, 4))) for _ in range(200)] for _ in range(3)]
        tails = ["".join(rng.choice([*chars, "/x"]) for _ in range(rng.randint(0, 3))) for _ in range(200)]
        mats = [char_matrix(c, max(map(len, c)), left=j == 0) for j, c in enumerate(cols)]
        rows = rows_of(mats, 200)
        # A few lines with a tail (one in 50; blank ones too): inserted into the text, not split.
        few = [(t or "/y") if i % 50 == 3 else (" " if i % 50 == 7 else "") for i, t in enumerate(tails)]
        # The last column right-aligned, every cell ending in ink (a number): no line is stripped.
        inked = char_matrix([c + "9" for c in cols[2]], max(map(len, cols[2])) + 1, left=False)
        inked_rows = rows_of([*mats[:2], inked], 200)
        for t in (None, tails, few):
            for ms, rs in ((mats, rows), ([*mats[:2], inked], inked_rows)):
                want = "".join((r if t is None else r + "  " + t[i]).rstrip() + "\n" for i, r in enumerate(rs))
                assert matrix_text(ms, 200, t, "  ") == want
