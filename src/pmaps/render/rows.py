"""Tables of rows for the whole-machine commands (top, libs, shared, phys): one --format dispatch.

A view is a list of columns and a list of row dicts (machine keys, sizes in bytes); text turns
sizes into units with fmt_bytes, the machine formats keep bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TextIO

from .table import write_csv, write_table
from .units import fmt_bytes, unit_header


@dataclass(frozen=True)
class Col:
    key: str
    header: str
    size: bool = False  # a byte count: formatted with the unit
    left: bool = False  # text column, left-aligned


@dataclass
class RowsView:
    """What every whole-machine command hands to the writer."""

    schema: str
    columns: list[Col]
    rows: list[dict[str, object]]
    total: dict[str, object] | None = None
    extra: dict[str, object] = field(default_factory=dict)  # more top-level JSON keys
    notes: list[str] = field(default_factory=list)  # text-only lines after the table


def cell(v: object, c: Col, unit: str) -> str:
    if c.size:
        return fmt_bytes(v, unit)  # type: ignore[arg-type]
    if v is None:
        return "?" if not c.left else ""
    return str(v)


def text_lines(view: RowsView, unit: str) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, body rows, footer rows) as strings."""
    suffix = unit_header(unit)
    header = [c.header + (suffix if c.size else "") for c in view.columns]
    body = [[cell(r.get(c.key), c, unit) for c in view.columns] for r in view.rows]
    foot = []
    if view.total is not None:
        foot.append([cell(view.total.get(c.key), c, unit) if c.key in view.total else "" for c in view.columns])
        # The label goes in the first text column (USER, PROGRAM, MAPPING...), else the first one.
        at = next((i for i, c in enumerate(view.columns) if c.left), 0)
        foot[0][at] = "total"
    return header, body, foot


def write_rows(out: TextIO, view: RowsView, fmt: str, unit: str = "human") -> None:
    """Write a view as text (aligned table), json, ndjson or csv."""
    keys = [c.key for c in view.columns]
    if fmt == "json":
        doc: dict[str, object] = {"schema": view.schema, "rows": view.rows}
        if view.total is not None:
            doc["total"] = view.total
        doc.update(view.extra)
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
    elif fmt == "ndjson":
        for r in view.rows:
            out.write(json.dumps({"schema": view.schema, **r}, separators=(",", ":")) + "\n")
    elif fmt == "csv":
        allkeys = keys + [k for k in (view.rows[0] if view.rows else {}) if k not in keys]
        write_csv(out, allkeys, [[_csv(r.get(k)) for k in allkeys] for r in view.rows])
    else:
        header, body, foot = text_lines(view, unit)
        write_table(out, header, body, footer=foot, lefts=[c.left for c in view.columns])
        for n in view.notes:
            out.write(n + "\n")


def _csv(v: object) -> object:
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return v
