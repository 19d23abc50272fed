"""The one output layer: every command builds a View, then calls `write(view, out, fmt, unit)`.

A View renders itself as text; the machine formats come from its JSON document (json), its
records (ndjson) and its table (csv): one dispatch, one JSON style, one CSV writer. Sizes stay
in bytes in the machine formats; text formats them with the unit (render/units.py).
"""
from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from .table import write_csv

FORMATS = ("text", "json", "ndjson", "csv")


def dumps(obj: object, indent: int | None = None) -> str:
    """JSON as every pmaps format writes it: compact, UTF-8 text kept as is."""
    import json  # here: 3-4 ms of every text command's start-up otherwise

    return json.dumps(obj, indent=indent, separators=None if indent else (",", ":"))


class View(abc.ABC):
    """A view-model: rows built from model/analysis values, written by `write`."""

    schema: str  # the JSON documents' "schema" value
    formats: tuple[str, ...] = FORMATS
    json_indent: int | None = None

    @abc.abstractmethod
    def text(self, out: TextIO, unit: str) -> None:
        """The human-facing text."""

    def document(self) -> dict[str, Any]:
        """The whole JSON document."""
        raise _no_form(self, "json")

    def records(self) -> Iterable[dict[str, Any]]:
        """One JSON object per NDJSON line."""
        raise _no_form(self, "ndjson")

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        """(header, rows) of the CSV form."""
        raise _no_form(self, "csv")

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        """The dispatch (a streaming view overrides it to write as it reads)."""
        if fmt == "text":
            self.text(out, unit)
        elif fmt == "json":
            out.write(dumps(self.document(), self.json_indent) + "\n")
        elif fmt == "ndjson":
            for r in self.records():
                out.write(dumps(r) + "\n")
        elif fmt == "csv":
            header, rows = self.table()
            write_csv(out, header, rows)
        else:
            raise ValueError(f"unknown format {fmt!r}")


def _no_form(view: View, fmt: str) -> ValueError:
    """A view asked for a format it does not declare in `formats` (write() refuses those first)."""
    return ValueError(f"{type(view).__name__} cannot be written as {fmt}")


def write(view: View, out: TextIO, fmt: str = "text", unit: str = "human") -> None:
    """Write a view in one of its formats."""
    if fmt not in view.formats:
        raise _no_form(view, fmt)
    view.write_to(out, fmt, unit)


def csv_cell(v: object) -> object:
    """Lists and objects in a CSV cell: space-separated words, or JSON for nested objects."""
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return " ".join(v)
    if isinstance(v, (list, dict)):
        return dumps(v)
    return v


def iter_rows(rows: Iterable[dict[str, Any]], keys: Sequence[str]) -> Iterator[list[object]]:
    for r in rows:
        yield [csv_cell(r.get(k)) for k in keys]
