"""Tables of rows for the whole-machine commands (top, libs, shared, phys): one --format dispatch.

A view is a list of columns and a list of row dicts (machine keys, sizes in bytes); text turns
sizes into units with fmt_bytes, the machine formats keep bytes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

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
