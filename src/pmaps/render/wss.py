"""`pmaps wss` output: per-cycle totals, a table per VMA, page ages, and the method's limits."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _str  # a str as json.dumps writes it: the C encoder
from typing import Any, TextIO

import numpy as np

from ..analysis.wss import WssResult, WssRows, totals
from ..kernel.maps import VmaTable
from ..numeric import PAGE_SHIFT, PAGE_SIZE
from .output import View
from .table import cell_matrix, char_matrix, csv_text, hex_ranges, printable, unprintable, write_columns, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-wss/1"
U64 = np.uint64
CSV_HEADER = ["start", "end", "perms", "path", "resident_bytes", "accessed_bytes", "located_bytes"]


def _run_bounds(rs: tuple[np.ndarray, np.ndarray], start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per VMA [start, end): [lo, hi) indexes of the last cycle's located runs (first page, pages) inside it."""
    first = rs[0]
    return (np.searchsorted(first, (start >> U64(PAGE_SHIFT)).astype(np.int64)),
            np.searchsorted(first, (end >> U64(PAGE_SHIFT)).astype(np.int64)))


def _runs_in(rs: tuple[np.ndarray, np.ndarray], start: np.ndarray, end: np.ndarray) -> list[list[list[int]]]:
    """Per VMA [start, end): [[address, pages], ...] of the last cycle's located runs inside it."""
    lo, hi = _run_bounds(rs, start, end)
    fl, nl = rs[0].tolist(), rs[1].tolist()
    return [[[a << PAGE_SHIFT, k] for a, k in zip(fl[x:y], nl[x:y])] for x, y in zip(lo.tolist(), hi.tolist())]


# -- the JSON document as json.dumps(doc, indent=1) writes it, without its pure-Python encoder -----
# json.dumps with an indent never uses the C encoder: 65,000 VMAs cost ~0.6 s there (and ~0.2 s
# more to build their dicts). Each VMA's object is one fixed pattern (the indentation of depth 2,
# the keys in document() order) filled by %: the strings escaped by the C encoder's own function
# (each distinct path once), the numbers as int.__repr__ writes them (as json does). The parts
# around the rows (a few small values) are json.dumps' own text.
_ROW = ('  {\n   "start": %d,\n   "end": %d,\n   "perms": %s,\n   "path": %s,\n   "resident": %d,\n'
        '   "accessed": %d,\n   "located": %d,\n   "counted": %d,\n   "located_runs": %s\n  }')
_ROW_UNCOUNTED = _ROW.replace('"counted": %d', '"counted": null')  # idle tracking: no smaps counts
_RUN = "    [\n     %d,\n     %d\n    ]"  # [address, pages] at depth 4
_CHUNK = 8192  # rows formatted and written at a time


def _runs_text(rs: tuple[np.ndarray, np.ndarray], start: np.ndarray, end: np.ndarray) -> list[str]:
    """_runs_in's lists per VMA as json.dumps(indent=1) writes them at depth 3 ("[]" when empty)."""
    lo, hi = _run_bounds(rs, start, end)
    out = ["[]"] * len(start)
    some = np.flatnonzero(hi > lo)
    if not len(some):
        return out
    fl, nl = rs[0].tolist(), rs[1].tolist()
    for i, x, y in zip(some.tolist(), lo[some].tolist(), hi[some].tolist()):
        flat: list[int] = [0] * (2 * (y - x))
        flat[0::2], flat[1::2] = [a << PAGE_SHIFT for a in fl[x:y]], nl[x:y]
        out[i] = "[\n" + ",\n".join([_RUN] * (y - x)) % tuple(flat) + "\n   ]"
    return out


def _encoded(t: VmaTable, encode: Callable[[str], str]) -> tuple[list[str], list[str]]:
    """Each VMA's perms and path as `encode` writes them, each distinct value encoded once."""
    paths = t.path
    enc = {p: encode(p) for p in dict.fromkeys(paths)}
    kinds, code = t.kinds("perms")
    pk = [encode(k) for k in kinds]
    return [pk[k] for k in code.tolist()], list(map(enc.__getitem__, paths))


def _formatted(cols: list[list[Any]], n: int, rows: Callable[[int], str]) -> Iterator[str]:
    """n rows of the columns, _CHUNK at a time, each piece one % format (rows(m): that of m rows)."""
    k = len(cols)
    for at in range(0, n, _CHUNK):
        m = min(_CHUNK, n - at)
        flat: list[Any] = [None] * (k * m)
        for j, col in enumerate(cols):
            flat[j::k] = col[at:at + m]
        yield rows(m) % tuple(flat)


def _json_rows(view: WssView) -> Iterator[str]:
    """The rows of the "vmas" list, in pieces of _CHUNK rows joined by ",\n" (no separator at either end)."""
    c, rs = view.rows, view.res.runs
    t = c.table
    if not len(c):
        return
    perms, paths = _encoded(t, _str)
    cols: list[list[Any]] = [t.start.tolist(), t.end.tolist(), perms, paths, c.resident.tolist(),
                             c.accessed.tolist(), c.located.tolist()]
    row = _ROW_UNCOUNTED
    if c.counted is not None:
        cols.append(c.counted.tolist())
        row = _ROW
    cols.append(_runs_text(rs, t.start, t.end))
    yield from _formatted(cols, len(c), lambda m: ",\n".join([row] * m))


def _csv_cell(text: str) -> str:
    """A text as Python's csv writer writes it in a row of several cells (quoted only when it holds
    a comma, a quote or a line break; safetext.csv_text: never a formula): the writer itself, once
    per distinct text."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([csv_text(text), ""])
    return buf.getvalue()[:-2]  # the ",\n" after it


def _csv_rows(view: WssView) -> Iterator[str]:
    """The CSV rows (after the header): csv.writer's bytes, each distinct path and perms encoded
    by it once (65,000 VMAs: a row written per VMA by csv.writer took ~0.1 s)."""
    c = view.rows
    t = c.table
    perms, paths = _encoded(t, _csv_cell)
    cols: list[list[Any]] = [t.start.tolist(), t.end.tolist(), perms, paths, (c.resident * PAGE_SIZE).tolist(),
                             (c.accessed * PAGE_SIZE).tolist(), (c.located * PAGE_SIZE).tolist()]
    yield from _formatted(cols, len(c), lambda m: "%d,%d,%s,%s,%d,%d,%d\n" * m)


@dataclass
class WssView(View):
    res: WssResult
    rows: WssRows  # the rows shown
    schema: str = SCHEMA
    formats: tuple[str, ...] = ("text", "json", "csv")
    json_indent: int | None = 1

    @classmethod
    def build(cls, res: WssResult, all_vmas: bool = False, sort: str = "address", limit: int = 0) -> WssView:
        cols = WssRows.of(res.rows)
        acc = cols.accessed
        idx = np.arange(len(cols)) if all_vmas else np.flatnonzero((cols.resident != 0) | (acc != 0))
        if sort in ("accessed", "resident"):
            key = acc if sort == "accessed" else cols.resident
            idx = idx[np.lexsort((cols.table.start[idx], -key[idx]))]
        if limit:
            idx = idx[:limit]
        return cls(res, cols.take(idx))

    def _head(self) -> dict[str, Any]:
        """The document's members before "vmas"."""
        r = self.res
        return {"schema": SCHEMA, "pid": r.pid, "comm": r.comm, "method": r.method, "interval": r.interval,
                "intervals": r.intervals, "limits": r.limits, "cycles": r.cycles}

    def _ages(self) -> list[dict[str, Any]]:
        return [{"age": a, "pages": n} for a, n in self.res.ages]

    def document(self) -> dict[str, Any]:
        r, c = self.res, self.rows
        t = c.table
        runs = _runs_in(r.runs, t.start, t.end)
        return {**self._head(),
                "vmas": [{"start": v.vma.start, "end": v.vma.end, "perms": v.vma.perms, "path": v.vma.path,
                          "resident": v.resident, "accessed": v.accessed, "located": v.located, "counted": v.counted,
                          "located_runs": rs} for v, rs in zip(c, runs)],
                "ages": self._ages()}

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        """JSON: json.dumps(self.document(), indent=1)'s bytes, the rows written by _json_rows (65,000
        VMAs: ~40 ms instead of ~0.6 s); CSV: csv.writer's bytes of table(), by _csv_rows; text as
        any View's."""
        if fmt == "csv":  # csv.writer's bytes, written by _csv_rows
            out.write(",".join(map(_csv_cell, CSV_HEADER)) + "\n")
            for piece in _csv_rows(self):
                out.write(piece)
            return
        if fmt != "json" or self.json_indent != 1:
            super().write_to(out, fmt, unit)
            return
        head = json.dumps(self._head(), indent=1)
        ages = json.dumps(self._ages(), indent=1).replace("\n", "\n ")  # at depth 1
        out.write(head[:-2] + ',\n "vmas": ')  # head ends "\n}"; a newline is never inside a JSON string
        if not len(self.rows):
            out.write("[]")
        else:
            out.write("[\n")
            for i, piece in enumerate(_json_rows(self)):
                out.write(",\n" + piece if i else piece)
            out.write("\n ]")
        out.write(',\n "ages": ' + ages + "\n}\n")

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        c = self.rows
        t = c.table
        return CSV_HEADER, zip(t.start.tolist(), t.end.tolist(), t.perms, t.path, (c.resident * PAGE_SIZE).tolist(),
                               (c.accessed * PAGE_SIZE).tolist(), (c.located * PAGE_SIZE).tolist())

    def text(self, out: TextIO, unit: str) -> None:
        r, u = self.res, unit

        def b(pages: int) -> str:
            return fmt_bytes(pages * PAGE_SIZE, u)

        n = len(r.cycles)
        out.write(f"pmaps wss: pid {r.pid} ({printable(r.comm)}), method {r.method}, "
                  f"{n} cycle{'s' * (n != 1)} of {r.interval:g}s")
        if any(w > r.interval for w in r.intervals):  # --max-cpu stretched them
            out.write(f" (stretched to {max(r.intervals):.3g}s by the CPU budget)")
        out.write("\n")
        for i, c in enumerate(r.cycles, 1):
            out.write(f"cycle {i}: accessed {b(c['accessed'])} of {b(c['resident'])} resident "
                      f"(located page by page: {b(c['located'])})\n")
        h = unit_header(u)
        shown = self.rows
        t = totals(r.rows)
        out.write("\n")
        vt = shown.table
        head = ["ADDRESS", "PERMS", "RESIDENT" + h, "ACCESSED" + h, "LOCATED" + h, "MAPPING"]
        foot = ["total", "", b(t["resident"]), b(t["accessed"]), b(t["located"]), ""]
        # perms: each distinct value made a row of characters once, then picked for every VMA
        kinds, code = vt.kinds("perms")
        cols = [hex_ranges(vt.start, vt.end),
                char_matrix(kinds, max(map(len, kinds), default=0), left=True)[code]
                if not unprintable("".join(kinds)) else [kinds[k] for k in code.tolist()],
                *(cell_matrix(x, b, max(len(head[j]), len(foot[j])))
                  for j, x in enumerate((shown.resident, shown.accessed, shown.located), start=2)),
                list(vt.path)]
        write_columns(out, head, cols, left=2, text_last=True, footer=[foot])
        every = WssRows.of(r.rows)
        if len(shown) < int(np.count_nonzero((every.resident != 0) | (every.accessed != 0))):
            out.write(f"({len(shown)} of the VMAs with resident or accessed pages shown; totals are of all)\n")
        if n > 1:
            out.write("\npage ages: resident pages by intervals since their last located access\n")
            write_table(out, ["AGE", "PAGES", "SIZE" + h], [[a, str(k), b(k)] for a, k in r.ages], left=1)
        out.write("\n" + "\n".join(f"# {ln}" for ln in r.limits) + "\n")
