"""Tables of rows for the whole-machine commands (top, libs, shared, phys): one --format dispatch.

A view is a list of columns and a list of row dicts (machine keys, sizes in bytes); text turns
sizes into units with fmt_bytes, the machine formats keep bytes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .output import View, iter_rows
from .table import write_table
from .units import fmt_bytes, unit_header


@dataclass(frozen=True)
class Col:
    key: str
    header: str
    size: bool = False  # a byte count: formatted with the unit
    left: bool = False  # text column, left-aligned


@dataclass
class RowsView(View):
    """A table of rows: what the whole-machine commands (top, libs, shared, phys) hand to `write`."""

    schema: str
    columns: list[Col]
    rows: list[dict[str, Any]]
    total: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level JSON keys
    notes: list[str] = field(default_factory=list)  # text-only lines after the table
    machine_drop: tuple[str, ...] = ()  # text-only helper keys left out of the machine formats

    def _machine_rows(self) -> list[dict[str, Any]]:
        if not self.machine_drop:
            return self.rows
        return [{k: v for k, v in r.items() if k not in self.machine_drop} for r in self.rows]

    def text(self, out: TextIO, unit: str) -> None:
        header, body, foot = text_lines(self, unit)
        write_table(out, header, body, footer=foot, lefts=[c.left for c in self.columns])
        for n in self.notes:
            out.write(n + "\n")

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": self.schema, "rows": self._machine_rows()}
        if self.total is not None:
            doc["total"] = self.total
        doc.update(self.extra)
        return doc

    def records(self) -> Iterable[dict[str, Any]]:
        for r in self._machine_rows():
            yield {"schema": self.schema, **r}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        rows = self._machine_rows()
        keys = [c.key for c in self.columns if c.key not in self.machine_drop]
        allkeys = keys + [k for k in (rows[0] if rows else {}) if k not in keys]
        return allkeys, iter_rows(rows, allkeys)


def cells(values: list[Any], c: Col, unit: str) -> list[str]:
    """A column's values as text: sizes in the unit, None as '?' ('' in a text column)."""
    if c.size:
        return [fmt_bytes(v, unit) for v in values]
    none = "" if c.left else "?"
    return [none if v is None else str(v) for v in values]


def cell(v: object, c: Col, unit: str) -> str:
    return cells([v], c, unit)[0]


def text_lines(view: RowsView, unit: str) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, body rows, footer rows) as strings."""
    suffix = unit_header(unit)
    header = [c.header + (suffix if c.size else "") for c in view.columns]
    # Column by column (one comprehension per column, fmt_bytes cached), not a call per cell.
    cols = [cells([r.get(c.key) for r in view.rows], c, unit) for c in view.columns]
    body = [list(r) for r in zip(*cols)] if cols else [[] for _ in view.rows]
    foot = []
    if view.total is not None:
        foot.append([cell(view.total.get(c.key), c, unit) if c.key in view.total else "" for c in view.columns])
        # The label goes in the first text column (USER, PROGRAM, MAPPING...), else the first one.
        at = next((i for i, c in enumerate(view.columns) if c.left), 0)
        foot[0][at] = "total"
    return header, body, foot


# -- rows of text built a column at a time ----------------------------------------------------------
# A machine format's rows (JSON objects, CSV lines) as an (n, w) matrix of bytes: each column its
# cells NUL-padded to the column's widest, literals between them; the NULs dropped at the end
# leave each row's text. No Python step per row (65,000 VMAs: a few numpy passes). UTF-8 text
# goes through as its bytes (a NUL is never inside text: JSON escapes it, maps paths cannot hold one).


def decimal_cells(values: np.ndarray) -> np.ndarray:
    """str() of each int as ASCII bytes, right-aligned and NUL-padded on the left: (n, w) uint8."""
    v = np.asarray(values, dtype=np.int64)
    mag = np.abs(v).astype(np.uint64)
    digits = len(str(int(mag.max(initial=0))))
    neg = v < 0
    w = digits + bool(neg.any())
    out = np.zeros((len(v), w), dtype=np.uint8)
    ten, zero = np.uint64(10), np.uint8(ord("0"))
    for k in range(w - 1, w - 1 - digits, -1):  # the last digit first (always one), then while the number lasts
        d = (mag % ten).astype(np.uint8) + zero
        out[:, k] = d if k == w - 1 else np.where(mag > 0, d, 0)
        mag //= ten
    if neg.any():
        rows = np.flatnonzero(neg)
        out[rows, w - 1 - np.count_nonzero(out[rows], axis=1)] = ord("-")
    return out


def text_cells(texts: Sequence[str], index: np.ndarray | None = None) -> np.ndarray:
    """The texts (UTF-8, none with a NUL) NUL-padded to the longest: (n, w) uint8; with `index`,
    texts are the distinct values and each row is texts[index[i]]."""
    enc = [t.encode("utf-8", "surrogatepass") for t in texts]
    w = max(map(len, enc), default=0)
    m = np.array(enc, dtype=f"S{max(w, 1)}").view(np.uint8).reshape(len(enc), max(w, 1))
    return m if index is None else m[index]


def join_cells(parts: Sequence[np.ndarray | bytes], n: int) -> bytes:
    """Rows made of the parts side by side (cell matrices from decimal_cells/text_cells, or bytes
    literal in every row), the NUL padding dropped: the rows' text, one after the other."""
    width = sum(p.shape[1] if isinstance(p, np.ndarray) else len(p) for p in parts)
    m = np.zeros((n, width), dtype=np.uint8)
    at = 0
    for p in parts:
        if isinstance(p, np.ndarray):
            m[:, at:at + p.shape[1]] = p
            at += p.shape[1]
        else:
            m[:, at:at + len(p)] = np.frombuffer(p, dtype=np.uint8)
            at += len(p)
    return m[m != 0].tobytes()
