"""Plain aligned tables (golden-testable, pipe-friendly) and CSV, from rows of cells."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import TextIO


def write_table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 0,
                footer: Sequence[Sequence[str]] = (), text_last: bool = False) -> None:
    """Columns right-aligned except the first `left` ones; with text_last the last column is free
    text (a path), left-aligned after the others; the last column is never padded."""
    allrows = [list(header), *map(list, rows), *map(list, footer)]
    if not allrows:
        return
    ncol = len(header)
    widths = [max(len(r[i]) for r in allrows) for i in range(ncol)]

    def line(r: Sequence[str]) -> str:
        cells = []
        for i, c in enumerate(r):
            if i == ncol - 1 and (i < left or text_last):
                cells.append(c)
            elif i < left:
                cells.append(c.ljust(widths[i]))
            else:
                cells.append(c.rjust(widths[i]))
        return " ".join(cells).rstrip()

    for r in allrows:
        out.write(line(r) + "\n")


def write_csv(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if c is None else c for c in r] for r in rows)
