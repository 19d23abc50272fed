"""`pmaps files`: page-cache residency per file as a table, JSON (pmaps-files/1), NDJSON, CSV."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..analysis.files import FilesReport
from .output import View, iter_rows
from .table import write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-files/1"
KEYS = ("path", "size", "resident", "resident_pct", "dirty", "writeback", "evicted", "recently_evicted")
SIZE_COLS = (("size", "SIZE"), ("resident", "RESIDENT"), ("resident_pct", "%"), ("dirty", "DIRTY"),
             ("writeback", "WRITEBACK"), ("evicted", "EVICTED"), ("recently_evicted", "RECENT_EVICTED"))

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\ud800-\udfff]")


def safe_path(path: str) -> str:
    """A path for a terminal: control characters, backslashes and undecodable bytes (surrogates
    from os.fsdecode) written as escapes, so a file name cannot forge lines or move the cursor."""

    def esc(m: re.Match[str]) -> str:
        c = m.group()
        if c == "\\":
            return "\\\\"
        o = ord(c)
        return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"

    return _UNSAFE.sub(esc, path)


def skipped_line(skipped: dict[str, list[str]]) -> str | None:
    """One line: how many paths were not counted, by reason, with an example of each."""
    if not skipped:
        return None
    n = sum(len(v) for v in skipped.values())
    parts = [f"{len(v)} {k} (e.g. {safe_path(v[0])})" for k, v in sorted(skipped.items())]
    return f"{n} path{'s' if n > 1 else ''} not counted: " + "; ".join(parts)


@dataclass
class FilesView(View):
    report: FilesReport
    page_size: int
    method: str  # "cachestat" or "mincore"
    schema: str = SCHEMA

    def text(self, out: TextIO, unit: str) -> None:
        suffix = unit_header(unit)
        header = [h + (suffix if k not in ("resident_pct",) else "") for k, h in SIZE_COLS] + ["PATH"]
        owners = self.with_owners
        if owners:
            header.insert(-1, "PROCS")

        def cells(r: dict[str, Any]) -> list[str]:
            c = []
            for k, _ in SIZE_COLS:
                if k == "resident_pct":
                    c.append("-" if r[k] is None else f"{r[k]:g}%")
                else:
                    c.append(fmt_bytes(r[k], unit))
            if owners:
                c.append(str(len(r["owners"])) if "owners" in r else "")
            return [*c, safe_path(r["path"])]

        body = [cells(r) for r in self.report.rows]
        foot = [[*cells(self.report.total)[:-1], f"total ({self.report.nfiles} file"
                 f"{'s' if self.report.nfiles != 1 else ''})"]]
        write_table(out, header, body, footer=foot, text_last=True)

    @property
    def with_owners(self) -> bool:
        return bool(self.report.rows) and "owners" in self.report.rows[0]  # all rows or none

    @property
    def keys(self) -> tuple[str, ...]:
        return (*KEYS, "owners") if self.with_owners else KEYS

    def document(self) -> dict[str, Any]:
        keys = self.keys  # once: it looks at every row
        return {"schema": self.schema, "page_size": self.page_size, "method": self.method,
                "files": [{k: r[k] for k in keys} for r in self.report.rows],
                "total": {"files": self.report.nfiles, **{k: self.report.total[k] for k in KEYS if k != "path"}},
                "skipped": {k: len(v) for k, v in sorted(self.report.skipped.items())}}

    def records(self) -> Iterable[dict[str, Any]]:
        keys = self.keys
        for r in self.report.rows:
            yield {"schema": self.schema, **{k: r[k] for k in keys}}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return self.keys, iter_rows(self.report.rows, self.keys)
