"""`pmaps cgroups`: per memory cgroup, pages charged (kpagecgroup) beside memory.stat, and
file/shmem pages charged to one cgroup but mapped by others. JSON schema pmaps-cgroups/1."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .files import safe_path
from .output import View, csv_cell
from .table import write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-cgroups/1"
# (header, how to get the cell): pmaps' figure, then pmaps minus memory.stat (D = difference)
COLS: tuple[tuple[str, str, str], ...] = (
    ("CHARGED", "charged", ""), ("ANON", "compare", "anon"), ("D_ANON", "diff", "anon"),
    ("FILE", "compare", "file"), ("D_FILE", "diff", "file"), ("SHMEM", "compare", "shmem"),
    ("D_SHMEM", "diff", "shmem"), ("MAPPED", "compare", "mapped_file"), ("D_MAPPED", "diff", "mapped_file"),
    ("KERNEL", "kernel_pages", ""), ("ELSEWHERE", "mapped_elsewhere", ""), ("FROM_OTHERS", "mapped_from_others", ""),
)
# --lru: the kernel's LRU lists instead of the kinds
LRU_COLS: tuple[tuple[str, str, str], ...] = (
    ("CHARGED", "charged", ""), ("ACT_ANON", "compare", "active_anon"), ("D_ACT_ANON", "diff", "active_anon"),
    ("INACT_ANON", "compare", "inactive_anon"), ("D_INACT_ANON", "diff", "inactive_anon"),
    ("ACT_FILE", "compare", "active_file"), ("D_ACT_FILE", "diff", "active_file"),
    ("INACT_FILE", "compare", "inactive_file"), ("D_INACT_FILE", "diff", "inactive_file"),
    ("UNEVICT", "compare", "unevictable"), ("D_UNEVICT", "diff", "unevictable"),
)
CSV_KEYS = ("path", "charged", "anon", "file", "shmem", "kernel_pages", "swapbacked", "anon_thp", "dirty", "writeback",
            "active", "inactive", "unevictable", "mapped_file", "mapped_here", "mapped_elsewhere",
            "mapped_from_others", "not_mapped", "active_anon", "inactive_anon", "active_file", "inactive_file",
            "file_dirty")


def _signed(v: int | None, unit: str) -> str:
    if v is None:
        return "?"
    return ("+" if v > 0 else "-" if v < 0 else "") + fmt_bytes(abs(v), unit)


@dataclass
class CgroupsView(View):
    rows: list[dict[str, Any]]
    version: int
    detail: list[dict[str, Any]] | None = None
    detail_for: str = ""
    page_size: int = 4096
    schema: str = SCHEMA
    notes: list[str] = field(default_factory=list)
    lru: bool = False  # text: LRU_COLS instead of COLS

    def text(self, out: TextIO, unit: str) -> None:
        suffix = unit_header(unit)
        cols = LRU_COLS if self.lru else COLS
        header = [h + suffix for h, _, _ in cols] + ["CGROUP"]
        body = []
        for r in self.rows:
            cells = []
            for _, key, sub in cols:
                if key == "compare":
                    cells.append(fmt_bytes(r["compare"][sub]["pmaps"], unit))
                elif key == "diff":
                    cells.append(_signed(r["compare"][sub]["difference"], unit))
                elif key == "kernel_pages":
                    cells.append(fmt_bytes(r["kernel_pages"], unit))
                else:
                    cells.append(fmt_bytes(r.get(key), unit))
            body.append([*cells, safe_path(r["path"])])
        write_table(out, header, body, text_last=True)
        for n in self.notes:
            out.write(n + "\n")
        if self.detail is not None:
            out.write(f"\n# file and shmem pages of {safe_path(self.detail_for)} mapped across cgroups\n")
            dh = ["PAGES" + suffix, "CHARGED_TO", "MAPPED_BY", "PID", "COMMAND", "MAPPING"]
            db = [[fmt_bytes(d["bytes"], unit), safe_path(d["charged_to"]), safe_path(d["mapped_by"]), str(d["pid"]),
                   safe_path(d["comm"]), safe_path(d["mapping"])] for d in self.detail]
            write_table(out, dh, db, lefts=[False, True, True, False, True, True])

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": self.schema, "version": self.version, "page_size": self.page_size,
                               "cgroups": [{k: v for k, v in r.items()} for r in self.rows]}
        if self.detail is not None:
            doc["detail"] = {"cgroup": self.detail_for, "pages": self.detail}
        return doc

    def records(self) -> Iterable[dict[str, Any]]:
        for r in self.rows:
            yield {"schema": self.schema, **r}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return CSV_KEYS, ([csv_cell(r.get(k)) for k in CSV_KEYS] for r in self.rows)
