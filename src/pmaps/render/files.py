"""`pmaps files`: page-cache residency per file as a table, JSON (pmaps-files/1), NDJSON, CSV."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO, cast

from ..analysis.files import FilesReport, Users
from ..kernel.pagecache import FileStat
from .output import View, dumps, iter_rows
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
    # A directory is skipped only when given without -r (pagecache.walk): say how to walk it.
    hint = {"directory": "; -r walks it"}
    parts = [f"{len(v)} {k} (e.g. {safe_path(v[0])}{hint.get(k, '')})" for k, v in sorted(skipped.items())]
    return f"{n} path{'s' if n > 1 else ''} not counted: " + "; ".join(parts)


class FilesView(View):
    """`pmaps files`: a table, or JSON/NDJSON/CSV written row by row as the report's rows come
    (a streamed report is the walk itself: the totals follow the rows)."""

    schema = SCHEMA

    def __init__(self, report: FilesReport, page_size: int, method: str) -> None:
        self.report, self.page_size, self.method = report, page_size, method  # method: cachestat or mincore

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

        body = [cells(r) for r in self.report.dicts()]
        foot = [[*cells(self.report.total)[:-1], f"total ({self.report.nfiles} file"
                 f"{'s' if self.report.nfiles != 1 else ''})"]]
        write_table(out, header, body, footer=foot, text_last=True)

    @property
    def with_owners(self) -> bool:
        return self.report.users is not None

    @property
    def keys(self) -> tuple[str, ...]:
        return (*KEYS, "owners") if self.with_owners else KEYS

    def _head(self) -> str:
        return f'{{"schema":{_str(self.schema)},"page_size":{self.page_size},"method":{_str(self.method)},"files":['

    def _tail(self) -> str:
        total = self.report.total
        return "]," + dumps({"total": {"files": self.report.nfiles, **{k: total[k] for k in KEYS if k != "path"}},
                             "skipped": {k: len(v) for k, v in sorted(self.report.skipped.items())}})[1:]

    def document(self) -> dict[str, Any]:
        import json

        return cast(dict[str, Any], json.loads("".join(self._json())))

    def _json(self) -> Iterator[str]:
        """The JSON document in pieces, rows as they come (json_rows), the totals after them."""
        yield self._head()
        yield from json_rows(self.report.rows, self.page_size, self.report.users)
        yield self._tail()

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        if fmt == "json":
            _write_chunked(out, self._json(), "\n")
        elif fmt == "ndjson":
            head = f'{{"schema":{_str(self.schema)},'
            _write_chunked(out, (head + r[1:] + "\n" for r in json_rows(self.report.rows, self.page_size,
                                                                       self.report.users, sep="")), "")
        else:
            super().write_to(out, fmt, unit)

    def records(self) -> Iterable[dict[str, Any]]:
        for r in self.report.dicts():
            yield {"schema": self.schema, **r}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return self.keys, iter_rows(self.report.dicts(), self.keys)


_str = encode_basestring_ascii  # a str as json.dumps writes it (ensure_ascii): the C encoder itself


_NO_COUNTS = '"dirty":0,"writeback":0,"evicted":0,"recently_evicted":0'  # most files of a tree


def json_rows(rows: Iterable[FileStat], page_size: int, users: Users | None = None,
              sep: str = ",") -> Iterator[str]:
    """Each file as the JSON object json.dumps would make of its file_row (same keys, order and
    numbers: a test holds them equal), written by hand: json.dumps' cost per object would be
    most of a 10,000-file run. Objects after the first start with `sep`."""
    lead = ""
    ps = page_size
    for f in rows:
        path, size, _, _, c = f
        res, dirty, wb, ev, rev = c
        pages = (size + ps - 1) // ps
        # resident_pct(): f"{x:.1f}" is repr(round(x, 1)) for 0 <= x <= 100 (both round the exact
        # double half-even to one decimal), at a third of the cost.
        pct = f"{min(100.0, 100.0 * res / pages):.1f}" if pages else "null"
        if dirty is None or wb is None or ev is None or rev is None:  # mincore: not known
            tail = ",".join(f'"{k}":{"null" if v is None else v * ps}'
                            for k, v in zip(("dirty", "writeback", "evicted", "recently_evicted"), c[1:]))
        elif not (dirty or wb or ev or rev):
            tail = _NO_COUNTS
        else:
            tail = f'"dirty":{dirty * ps},"writeback":{wb * ps},"evicted":{ev * ps},"recently_evicted":{rev * ps}'
        own = "" if users is None else f',"owners":[{",".join(map(str, sorted(users.get((f.dev, f.ino), ()))))}]'
        yield f'{lead}{{"path":{_str(path)},"size":{size},"resident":{res * ps},"resident_pct":{pct},{tail}{own}}}'
        lead = sep


def _write_chunked(out: TextIO, pieces: Iterable[str], end: str) -> None:
    """Write pieces in chunks of a few hundred: one write per piece would cost more than the piece."""
    buf: list[str] = []
    for p in pieces:
        buf.append(p)
        if len(buf) >= 512:
            out.write("".join(buf))
            buf.clear()
    buf.append(end)
    out.write("".join(buf))
