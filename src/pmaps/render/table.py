"""Plain aligned tables (golden-testable, pipe-friendly) and CSV, from rows of cells."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import TextIO


def write_table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 0,
                footer: Sequence[Sequence[str]] = (), text_last: bool = False,
                lefts: Sequence[bool] | None = None) -> None:
    """Columns right-aligned except the first `left` ones (or those `lefts` marks); with
    text_last the last column is free text (a path), left-aligned after the others. A
    left-aligned last column is never padded."""
    allrows = [list(header), *map(list, rows), *map(list, footer)]
    if not allrows:
        return
    ncol = len(header)
    if lefts is None:
        lefts = [i < left or (text_last and i == ncol - 1) for i in range(ncol)]
    widths = [max(len(r[i]) for r in allrows) for i in range(ncol)]
    for r in allrows:
        cells = [c if lefts[i] and i == ncol - 1 else c.ljust(widths[i]) if lefts[i] else c.rjust(widths[i])
                 for i, c in enumerate(r)]
        out.write(" ".join(cells).rstrip() + "\n")


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(["" if c is None else c for c in r] for r in rows)
