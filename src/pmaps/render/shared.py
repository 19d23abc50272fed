"""`pmaps shared` output: pages in common per pair of processes, and per VMA of the first.

The per-VMA part has a row per VMA of the first process with pages (65,000 for some processes):
every format writes it a column at a time from the analysis' columns (text as character
matrices, render.table.write_columns; JSON, NDJSON and CSV as byte rows, render.rows.join_cells),
the same text as the row dicts of `vma_view` (kept for the document and tests) would give.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..analysis.sharing import Sharing
from ..numeric import distinct
from .output import View, dumps
from .rows import Col, RowsView, decimal_cells, join_cells, text_cells
from .table import cell_matrix, char_matrix, csv_text, printable, unprintable, write_columns, write_csv
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-shared/1"
CHUNK = 8192  # rows of the machine formats made at a time


def pair_view(sh: Sharing) -> RowsView:
    comm = dict(zip(sh.pids, sh.comms))
    rows: list[dict[str, Any]] = [{"pids": [a, b], "a": a, "comm_a": comm[a], "b": b, "comm_b": comm[b],
                                   "shared_bytes": n} for a, b, n in sh.pairs]
    cols = [Col("a", "PID"), Col("comm_a", "COMMAND", left=True), Col("b", "PID"), Col("comm_b", "COMMAND", left=True),
            Col("shared_bytes", "SHARED", True)]
    return RowsView(SCHEMA, cols, rows)


def _pct(rss: int, shared: int) -> str:
    return f"{100 * shared / rss:.0f}%" if rss else "-"


def _total(sh: Sharing) -> dict[str, Any]:
    return {"rss": int(sh.vma_rss.sum()), "shared": int(sh.vma_shared.sum()),
            **{f"with_{k}": int(sh.with_column(k).sum()) for k in sh.pids[1:]}}


def vma_view(sh: Sharing) -> RowsView:
    """The per-VMA table as row dicts (SharedView writes the same from the columns)."""
    others = sh.pids[1:]
    rows: list[dict[str, Any]] = []
    for r in sh.vmas:
        rows.append({"start": r.vma.start, "end": r.vma.end, "address": f"{r.vma.start:012x}", "perms": r.vma.perms,
                     "path": r.vma.path, "rss": r.rss, "shared": r.shared, "private": r.rss - r.shared,
                     "pct": _pct(r.rss, r.shared), "shared_with": {str(k): v for k, v in r.with_each.items()},
                     **{f"with_{k}": v for k, v in r.with_each.items()}})
    cols = [Col("address", "ADDRESS", left=True), Col("perms", "PERMS", left=True), Col("rss", "RSS", True),
            Col("shared", "SHARED", True), Col("pct", "%"),
            *[Col(f"with_{k}", f"W/{k}", True) for k in others], Col("path", "PATH", left=True)]
    return RowsView(SCHEMA, cols, rows, _total(sh))


def _machine_vma(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("with_") and k not in ("address", "pct")}


# -- the per-VMA rows from the columns ----------------------------------------------------------------


def _address_matrix(start: np.ndarray) -> np.ndarray:
    """f"{start:012x}" of each address, left-aligned to the longest: (n, w) uint8."""
    v = np.ascontiguousarray(start, dtype=np.uint64)
    b = v.astype(">u8").view(np.uint8).reshape(len(v), 8)
    nib = np.empty((len(v), 16), dtype=np.uint8)
    nib[:, 0::2], nib[:, 1::2] = b >> 4, b & 15
    digits = nib + np.uint8(ord("0")) + (nib > 9) * np.uint8(ord("a") - ord("0") - 10)
    count = np.full(len(v), 12, dtype=np.int64)
    for k in range(12, 16):  # a 13th digit and more for the addresses that need them
        count += v >= np.uint64(16**k)
    w = int(count.max(initial=0))  # no row: no width of its own (the header's)
    out = np.full((len(v), w), ord(" "), dtype=np.uint8)
    for c in np.flatnonzero(np.bincount(count, minlength=w + 1)).tolist():
        rows = np.flatnonzero(count == c)
        out[rows, :c] = digits[rows, 16 - c:]
    return out


def _pct_matrix(rss: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """_pct of each row, right-aligned: each distinct percentage formatted once."""
    n = len(rss)
    if not n:
        return np.zeros((0, 1), dtype=np.uint8)
    if int(shared.max()) >= 2**53 // 100 or int(rss.max()) >= 2**53:  # (past 80 PiB) Python's own division
        texts = list(map(_pct, rss.tolist(), shared.tolist()))
        return char_matrix(texts, max(map(len, texts)), left=False)
    # 100 * shared and rss are exact in float64s, so the quotient is the one Python's int / int
    # rounds to, and its distinct values are formatted by Python itself.
    ratio = np.where(rss > 0, 100 * shared.astype(np.float64) / np.maximum(rss, 1), -1.0)
    uniq, inv = distinct(ratio)
    texts = ["-" if x < 0 else f"{x:.0f}%" for x in uniq.tolist()]
    return char_matrix(texts, max(map(len, texts)), left=False)[inv]


def _csv_cells(texts: Sequence[str]) -> list[str]:
    """Each text as the csv module writes it in a row of several fields (quoted when it must be;
    safetext.csv_text: never a formula)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    out = []
    for t in texts:
        buf.seek(0)
        buf.truncate()
        w.writerow(["", csv_text(t)])
        out.append(buf.getvalue()[1:-1])
    return out


def _distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    index = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    return list(index), np.fromiter(map(index.__getitem__, texts), dtype=np.int64, count=len(texts))


@dataclass
class SharedView(View):
    sh: Sharing
    schema: str = SCHEMA

    def text(self, out: TextIO, unit: str) -> None:
        pids = self.sh.pids
        pair_view(self.sh).text(out, unit)
        out.write(f"\n# VMAs of {pids[0]} ({printable(self.sh.comms[0])}): resident, and how much is the same "
                  "pages as in " + ", ".join(map(str, pids[1:])) + "\n")
        self._vma_text(out, unit)

    def _vma_text(self, out: TextIO, unit: str) -> None:
        """vma_view's text, from the columns: the same widths, escapes and stripped lines."""
        sh, others = self.sh, self.sh.pids[1:]
        h = unit_header(unit)

        def b(x: int) -> str:
            return fmt_bytes(x, unit)

        total = _total(sh)
        head = ["ADDRESS", "PERMS", "RSS" + h, "SHARED" + h, "%", *[f"W/{k}{h}" for k in others], "PATH"]
        foot = ["total", "", b(total["rss"]), b(total["shared"]), "", *[b(total[f"with_{k}"]) for k in others], ""]
        kinds, code = sh.table.kinds("perms")
        sizes = [sh.vma_rss, sh.vma_shared, *[sh.with_column(k) for k in others]]
        mats = [cell_matrix(x, b, len(foot[j])) for j, x in zip([2, 3, *range(5, 5 + len(others))], sizes)]
        cols: list[list[str] | np.ndarray] = [
            _address_matrix(sh.table.start),
            char_matrix(kinds, max(map(len, kinds), default=0), left=True)[code]
            if not unprintable("".join(kinds)) else [kinds[k] for k in code.tolist()],
            mats[0], mats[1], _pct_matrix(sh.vma_rss, sh.vma_shared), *mats[2:], list(sh.table.path)]
        write_columns(out, head, cols, left=2, text_last=True, footer=[foot])

    def _vma_rows(self, prefix: bytes, end: bytes, quote: Callable[[Sequence[str]], list[str]], sep: bytes,
                  json: bool) -> Iterator[str]:
        """The per-VMA rows as JSON objects after `prefix` (json: a comma between rows when `end`
        is empty) or as CSV lines (`sep` between the fields), each followed by `end`: the text of
        CHUNK rows at a time (bounded memory)."""
        sh, n = self.sh, len(self.sh.table)
        t = sh.table
        kinds, code = t.kinds("perms")
        paths, pcode = _distinct(list(t.path))
        perms, path = text_cells(quote(kinds)), text_cells(quote(paths))
        others = list(dict.fromkeys(sh.pids[1:])) if json else sh.pids[1:]
        withs = [sh.with_column(k) for k in others]
        keys = [b"," * bool(j) + dumps(str(k)).encode() + b":" for j, k in enumerate(others)]
        for lo in range(0, n, CHUNK):
            at = slice(lo, min(lo + CHUNK, n))
            rss, shared = sh.vma_rss[at], sh.vma_shared[at]
            cells = [decimal_cells(t.start[at]), decimal_cells(t.end[at]), perms[code[at]], path[pcode[at]],
                     decimal_cells(rss), decimal_cells(shared), decimal_cells(rss - shared)]
            parts: list[np.ndarray | bytes]
            if json:
                comma = np.full((len(rss), 1), 0 if end else ord(","), dtype=np.uint8)
                if lo == 0:
                    comma[0] = 0  # between rows (a NUL: nothing): not before the first
                parts = [comma, prefix + b'"start":', cells[0], b',"end":', cells[1], b',"perms":', cells[2],
                         b',"path":', cells[3], b',"rss":', cells[4], b',"shared":', cells[5], b',"private":',
                         cells[6], b',"shared_with":{']
                for key, w in zip(keys, withs):
                    parts += [key, decimal_cells(w[at])]
                parts.append(b"}}" + end)
            else:
                parts = [cells[0]]
                for c in [*cells[1:], *(decimal_cells(w[at]) for w in withs)]:
                    parts += [sep, c]
                parts.append(end)
            yield join_cells(parts, len(rss)).decode("utf-8", "surrogatepass")

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        """The per-VMA rows of the machine formats written from the columns: the same text as
        View's dispatch writes from document(), records() and table() (tested)."""
        sh = self.sh
        if fmt == "json":
            head = dumps({"schema": SCHEMA, "processes": self._processes(), "pairs": self._pairs()})
            out.write(head[:-1] + ',"vmas":[')
            for text in self._vma_rows(b"{", b"", _json_texts, b"", True):
                out.write(text)
            out.write('],"total":' + dumps(_total(sh)) + "}\n")
        elif fmt == "ndjson":
            for r in pair_view(sh).rows:
                out.write(dumps({"schema": SCHEMA, "kind": "pair", "pids": r["pids"],
                                 "shared_bytes": r["shared_bytes"]}) + "\n")
            prefix = dumps({"schema": SCHEMA, "kind": "vma", "pid": sh.pids[0]})[:-1] + ","
            for text in self._vma_rows(prefix.encode(), b"\n", _json_texts, b"", True):
                out.write(text)
        elif fmt == "csv" and "\0" not in "".join(sh.table.path):  # (a NUL would be lost with the padding)
            write_csv(out, self._csv_keys(), [])
            for text in self._vma_rows(b"", b"\n", _csv_cells, b",", False):
                out.write(text)
        else:
            super().write_to(out, fmt, unit)

    def _processes(self) -> list[dict[str, Any]]:
        sh = self.sh
        return [{"pid": p, "comm": c, "rss": r} for p, c, r in zip(sh.pids, sh.comms, sh.rss)]

    def _pairs(self) -> list[dict[str, Any]]:
        return [{"pids": r["pids"], "shared_bytes": r["shared_bytes"]} for r in pair_view(self.sh).rows]

    def _csv_keys(self) -> list[str]:
        return ["start", "end", "perms", "path", "rss", "shared", "private", *[f"with_{p}" for p in self.sh.pids[1:]]]

    def document(self) -> dict[str, Any]:
        vv = vma_view(self.sh)
        return {"schema": SCHEMA, "processes": self._processes(), "pairs": self._pairs(),
                "vmas": [_machine_vma(r) for r in vv.rows], "total": vv.total}

    def records(self) -> Iterable[dict[str, Any]]:
        for r in pair_view(self.sh).rows:
            yield {"schema": SCHEMA, "kind": "pair", "pids": r["pids"], "shared_bytes": r["shared_bytes"]}
        for r in vma_view(self.sh).rows:
            yield {"schema": SCHEMA, "kind": "vma", "pid": self.sh.pids[0], **_machine_vma(r)}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        keys = self._csv_keys()
        return keys, ([r[k] for k in keys] for r in vma_view(self.sh).rows)


def _json_texts(texts: Sequence[str]) -> list[str]:
    return [dumps(t) for t in texts]
