"""Plain aligned tables (golden-testable, pipe-friendly) and CSV, from rows of cells."""
from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import TextIO

import numpy as np

from ..numeric import distinct

# Process names, paths and cgroup names are anyone's text: on a terminal a control character
# (ESC starts a sequence that can move the cursor, retitle the window, rewrite what root reads)
# or a bidi override must not act. C0, DEL, C1 and the Unicode bidi controls are shown as \xNN
# or \uNNNN; everything printable is kept.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters escaped."""
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


def unprintable(text: str) -> bool:
    """Whether printable() would change the text."""
    return _UNPRINTABLE.search(text) is not None


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
    if _UNPRINTABLE.search("".join(c for r in allrows for c in r)):
        allrows = [list(map(printable, r)) for r in allrows]
    ncol = len(header)
    if lefts is None:
        lefts = [i < left or (text_last and i == ncol - 1) for i in range(ncol)]
    widths = [max(map(len, col)) for col in zip(*allrows)]
    # One format string for every row: a cell costs no Python call of its own.
    spec = " ".join("{}" if lefts[i] and i == ncol - 1 else f"{{:{'<' if lefts[i] else '>'}{widths[i]}}}"
                    for i in range(ncol))
    out.write("".join(spec.format(*r).rstrip() + "\n" for r in allrows))


def write_columns(out: TextIO, header: Sequence[str], cols: Sequence[list[str]], left: int = 0,
                  footer: Sequence[Sequence[str]] = (), text_last: bool = False) -> None:
    """write_table's text from columns (a list of cells per column, one cell per row): each column
    escaped, measured and padded as a whole, no Python step per cell."""
    ncol = len(header)
    full = [[header[j], *cols[j], *(f[j] for f in footer)] for j in range(ncol)]
    full = [list(map(printable, col)) if unprintable("".join(col)) else col for col in full]
    for j in range(ncol):
        is_left = j < left or (text_last and j == ncol - 1)
        if is_left and j == ncol - 1:
            continue
        w = max(map(len, full[j]))
        if min(map(len, full[j])) < w:
            full[j] = list(map(str.ljust if is_left else str.rjust, full[j], repeat(w)))
    out.write("\n".join(map(str.rstrip, map(" ".join, zip(*full)))) + "\n")


def cells(values: np.ndarray, fmt: Callable[[int], str], width: int = 0) -> list[str]:
    """fmt of each value of an int column, right-aligned to at least `width` and to the widest:
    each distinct value formatted and padded once."""
    if not len(values):
        return []
    uniq, inv = distinct(values)
    text = [fmt(x) for x in uniq.tolist()]
    w = max(width, max(map(len, text)))
    padded = np.array([t.rjust(w) for t in text], dtype=object)
    out: list[str] = padded[inv].tolist()
    return out


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if c is None else c for c in r] for r in rows)
