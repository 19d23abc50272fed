"""`pmaps files`: page-cache residency per file as a table, JSON (pmaps-files/1), NDJSON, CSV."""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..analysis.files import FilePages, FilesReport
from ..kernel.maps import PAGE_SHIFT, PAGE_SIZE, Vma
from ..model import Ranges, flag_string, ranges_of, state_names
from ..numeric import run_bounds
from .output import View, iter_rows
from .pmaps import RowBuilder
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


PAGES_SCHEMA = "pmaps-file-pages/1"


def _segments(fp: FilePages) -> list[tuple[slice, str | None]]:
    """Pieces of the page columns with one charged memcg each (the whole file without --cgroup)."""
    n = len(fp.pages)
    if fp.cgroup is None or n == 0:
        return [(slice(0, n), None)]
    first, count = run_bounds(fp.cgroup[1:] != fp.cgroup[:-1])
    return [(slice(f, f + c), fp.cgroup_names.get(int(fp.cgroup[f]), f"?{int(fp.cgroup[f])}"))
            for f, c in zip(first.tolist(), count.tolist())]


def file_ranges(fp: FilePages, full: bool, with_pfn: bool) -> list[tuple[Ranges, str | None]]:
    return [(ranges_of(fp.pages.take(sl), fp.known, full=full, with_pfn=with_pfn, swap=False), cg)
            for sl, cg in _segments(fp)]


@dataclass
class FilePagesView(View):
    """`pmaps files --pages`: per file its path line, then INDEX COUNT FLAGS MAPCOUNT [PFN] [CGROUP]
    ranges of its resident pages (the 2007 format; INDEX is the file page index)."""

    files: Iterable[FilePages]
    full: bool = False
    with_pfn: bool = False
    with_cgroup: bool = False
    schema: str = PAGES_SCHEMA
    formats: tuple[str, ...] = ("text", "json")
    seen: list[FilePages] = field(default_factory=list)  # what was written (for the notes)

    def text(self, out: TextIO, unit: str) -> None:
        for fp in self.files:
            self.seen.append(fp)
            out.write(safe_path(fp.path) + "\n")
            rb = RowBuilder(fp.known, self.full, self.with_pfn)
            vma = Vma(0, max(1, len(fp.pages)) << PAGE_SHIFT, "r--s", 0, "00:00", 0, fp.path)
            for r, cg in file_ranges(fp, self.full, self.with_pfn):
                lines = rb.text(vma, r)
                if cg is not None:
                    lines = "".join(f"{ln} {safe_path(cg)}\n" for ln in lines.splitlines())
                out.write(lines)

    def document(self) -> dict[str, Any]:
        files = []
        for fp in self.files:
            self.seen.append(fp)
            ranges = []
            mask = int(fp.known.mask())
            for r, cg in file_ranges(fp, self.full, self.with_pfn):
                for i in range(len(r)):
                    st, mc = int(r.state[i]), int(r.mapcount[i])
                    d: dict[str, Any] = {"index": int(r.vpn[i]), "count": int(r.count[i]),
                                         "mapcount": None if mc < 0 else mc,
                                         "flags": flag_string(st, mask, full=False), "names": state_names(st)}
                    if self.with_pfn:
                        d["pfn"] = int(r.pfn[i]) if r.pfn is not None and fp.known.pfn else None
                    if cg is not None:
                        d["cgroup"] = cg
                    ranges.append(d)
            files.append({"path": fp.path, "size": fp.size, "resident": len(fp.pages) * PAGE_SIZE, "ranges": ranges})
        return {"schema": self.schema, "files": files}
