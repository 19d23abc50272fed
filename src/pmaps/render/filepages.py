"""`pmaps files --pages`: a file's resident pages in the 2007 format, and JSON (pmaps-file-pages/1)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..analysis.files import FilePages
from ..kernel.maps import PAGE_SHIFT, PAGE_SIZE, Vma
from ..model import Ranges, flag_string, ranges_of, state_names
from ..numeric import run_bounds
from .files import safe_path
from .output import View
from .range_rows import RowBuilder

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
