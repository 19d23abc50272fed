"""--summary: a footprint table per VMA with process totals (text table, JSON, NDJSON, CSV)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ..analysis.footprint import finish_columns
from ..kernel.maps import Vma, VmaTable
from ..numeric import distinct, unique_sorted
from .output import View
from .table import printable, unprintable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-summary/1"
COLS = ("size", "rss", "pss", "uss", "swap", "anon_thp", "dirty", "referenced")
# The figures a summary shows (machine formats carry all of them), in output order.
KEYS = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "anon_thp", "dirty", "referenced", "zero_page", "hugetlb")


def vma_dict(vma: Vma) -> dict[str, object]:
    return {"start": vma.start, "end": vma.end, "perms": vma.perms, "offset": vma.offset, "dev": vma.dev,
            "inode": vma.inode, "path": vma.path}


@dataclass
class ProcessSummary:
    """One process: per-VMA rows of byte figures, then the totals."""

    pid: int
    comm: str
    table: VmaTable = field(default_factory=lambda: VmaTable.of_vmas([]))
    cols: dict[str, np.ndarray | None] = field(default_factory=dict)  # "size" and KEYS: bytes per VMA, None unknown
    total: dict[str, int | None] = field(default_factory=dict)

    @property
    def vmas(self) -> list[Vma]:
        return self.table.vmas

    @property
    def rows(self) -> list[tuple[Vma, dict[str, int | None]]]:
        """(VMA, its figures) per VMA: what the machine formats write."""
        keys = ("size", *KEYS)
        n = len(self.table)
        lists = [[None] * n if self.cols[k] is None else self.cols[k].tolist() for k in keys]  # type: ignore[union-attr]
        return [(vma, dict(zip(keys, vals))) for vma, vals in zip(self.vmas, zip(*lists))]

    @classmethod
    def build(cls, pid: int, comm: str, vmas: list[Vma] | VmaTable, raw: dict[str, np.ndarray],
              unknown: set[str]) -> ProcessSummary:
        """From the engine's raw sums per VMA, one column per figure (footprint.vma_columns)."""
        table = VmaTable.of(vmas)
        view = cls(pid, comm, table)
        fin = finish_columns(raw, unknown, KEYS)
        tot = finish_columns({k: np.array([int(raw[k].sum())]) for k in KEYS}, unknown, KEYS)
        size = (table.end - table.start).astype(np.int64)
        view.cols = {"size": size, **fin}
        view.total = {"size": int(size.sum()), **{k: None if c is None else int(c[0]) for k, c in tot.items()}}
        return view


def _cells(col: np.ndarray | None, n: int, unit: str, width: int = 0) -> list[str]:
    """A column of byte figures as text (fmt_bytes), right-aligned to at least `width` and to its
    widest cell: each distinct value formatted once."""
    if col is None:
        return ["?".rjust(width)] * n
    if n < 64:
        return [fmt_bytes(x, unit).rjust(width) for x in col.tolist()]
    uniq, inv = distinct(col)
    text = [fmt_bytes(x, unit) for x in uniq.tolist()]
    w = max(width, max(map(len, text)))
    cells = np.array([t.rjust(w) for t in text], dtype=object)
    out: list[str] = cells[inv.ravel()].tolist()
    return out


@dataclass
class SummaryView(View):
    processes: list[ProcessSummary]
    schema: str = SCHEMA

    def document(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "processes": [
            {"pid": v.pid, "comm": v.comm, "total": v.total,
             "vmas": [{**vma_dict(vma), **vals} for vma, vals in v.rows]}
            for v in self.processes]}

    def records(self) -> Iterable[dict[str, Any]]:
        for v in self.processes:
            for vma, vals in v.rows:
                yield {"schema": SCHEMA, "pid": v.pid, "comm": v.comm, **vma_dict(vma), **vals}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        header = ["pid", "comm", "start", "end", "perms", "path", *COLS]
        return header, ([v.pid, v.comm, vma.start, vma.end, vma.perms, vma.path, *(vals[c] for c in COLS)]
                        for v in self.processes for vma, vals in v.rows)

    def text(self, out: TextIO, unit: str) -> None:
        for n, v in enumerate(self.processes):
            if n:
                out.write("\n")
            if len(self.processes) > 1:
                out.write(f"# {v.pid} {printable(v.comm)}\n")
            suffix = unit_header(unit)
            header = ["address", "perms", *(c.upper() + suffix for c in COLS), "path"]
            total = ["total", "", *(fmt_bytes(v.total[c], unit) for c in COLS), ""]
            n = len(v.table)
            if n < 64:
                rows = list(zip([f"{s:012x}" for s in v.table.start.tolist()], v.table.perms,
                                *(_cells(v.cols[c], n, unit) for c in COLS), v.table.path))
                write_table(out, header, rows, left=2, footer=[total], text_last=True)
                continue
            paths = v.table.path
            if not v.table.plain and unprintable("".join(paths)):
                paths = [printable(p) for p in paths]
            least = [max(len(header[j]), len(total[j])) for j in range(len(header) - 1)]
            widths = list(least)
            body = _fixed_rows(v, unit, widths, paths)
            if body is None:
                widths = list(least)
                body = _rows_by_cells(v, unit, widths, paths)
            head = [header[0].ljust(widths[0]), header[1].ljust(widths[1]),
                    *(h.rjust(w) for h, w in zip(header[2:-1], widths[2:])), header[-1]]
            foot = [total[0].ljust(widths[0]), total[1].ljust(widths[1]),
                    *(t.rjust(w) for t, w in zip(total[2:-1], widths[2:])), total[-1]]
            out.write(" ".join(head).rstrip() + "\n")
            out.write(body)
            out.write(" ".join(foot).rstrip() + "\n")


def _rows_by_cells(v: ProcessSummary, unit: str, widths: list[int], paths: list[str]) -> str:
    """The table's rows, column by column (write_table's layout): each distinct figure formatted and
    padded once; `widths` (at least the header's and footer's) grow to each column's widest cell."""
    n = len(v.table)
    cols: list[list[str]] = []
    for j, cells in enumerate([[f"{s:012x}" for s in v.table.start.tolist()], v.table.perms]):
        w = widths[j] = max(widths[j], max(map(len, cells)))
        if min(map(len, cells)) < w:  # each distinct cell padded once (perms: a few of them)
            padded = {c: c.ljust(w) for c in set(cells)} if j else {}
            cells = list(map(padded.__getitem__, cells)) if j else [c.ljust(w) for c in cells]
        cols.append(cells)
    for j, c in enumerate(COLS, start=2):
        cols.append(_cells(v.cols[c], n, unit, widths[j]))
        widths[j] = len(cols[-1][0])
    return "\n".join(map(str.rstrip, map(" ".join, zip(*cols, paths)))) + "\n"


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _fixed_rows(v: ProcessSummary, unit: str, widths: list[int], paths: list[str]) -> str | None:
    """_rows_by_cells' text from a matrix of bytes: every column but the path has one width, so the
    rows up to the path are one (rows, width) array of ASCII filled column by column (addresses in
    hex by numpy, each distinct perms and figure encoded once), and only the named VMAs' paths are
    put in by Python. None when a cell is not ASCII (a snapshot file's odd perms)."""
    table = v.table
    n = len(table)
    kinds, code = table.kinds("perms")
    if not all(map(str.isascii, kinds)):
        return None
    blocks: list[np.ndarray] = []
    # Addresses: f"{start:012x}", left-aligned: each 4-bit digit from the first one not zero (at
    # most 16 digits, at least 12: a few row groups by length).
    octets = table.start.astype(">u8").view(np.uint8).reshape(n, 8)
    chars = _HEX_DIGITS[np.stack((octets >> 4, octets & 15), axis=2).reshape(n, 16)]
    nonzero = chars != 48
    digits = np.maximum(16 - np.where(nonzero.any(axis=1), np.argmax(nonzero, axis=1), 16), 12)
    w = widths[0] = max(widths[0], int(digits.max()))
    addr = np.full((n, w), 32, dtype=np.uint8)
    for d in unique_sorted(digits).tolist():
        rows = np.flatnonzero(digits == d)
        addr[rows, :d] = chars[rows, 16 - d:]
    blocks.append(addr)
    w = widths[1] = max(widths[1], max(map(len, kinds)))
    blocks.append(_encoded([p.ljust(w) for p in kinds], w)[code])
    for j, c in enumerate(COLS, start=2):
        col = v.cols[c]
        if col is None:
            cells, inv = ["?"], np.zeros(n, dtype=np.int64)
        else:
            uniq, inv = distinct(col)
            cells = [fmt_bytes(x, unit) for x in uniq.tolist()]
        if not all(map(str.isascii, cells)):
            return None
        w = widths[j] = max(widths[j], max(map(len, cells)))
        blocks.append(_encoded([t.rjust(w) for t in cells], w)[inv])
    # One blank between columns, a newline after each row.
    row = sum(b.shape[1] for b in blocks) + len(blocks)
    m = np.full((n, row), 32, dtype=np.uint8)
    at = 0
    for b in blocks:
        m[:, at:at + b.shape[1]] = b
        at += b.shape[1] + 1
    m[:, -1] = 10
    text = str(m.data, "ascii")  # decoded from the array's buffer: no copy of the bytes first
    # A row with a path: the fixed part, a blank, the path; its trailing blanks cut (write_table's rstrip).
    pieces: list[str] = []
    done = 0
    for i in np.flatnonzero(table.named).tolist():
        end = (i + 1) * row - 1
        pieces += [text[done:end], (" " + paths[i]).rstrip()]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _encoded(cells: list[str], width: int) -> np.ndarray:
    """ASCII cells of one width as a (cells, width) array of bytes."""
    return np.frombuffer("".join(cells).encode("ascii"), dtype=np.uint8).reshape(len(cells), width)
