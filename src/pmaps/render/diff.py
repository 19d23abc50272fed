"""`pmaps diff` output: a text table per VMA, JSON (schema pmaps-diff/1), NDJSON and CSV.

Rows are built from an analysis.diff.Diff, then written (one --format dispatch).
"""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from ..analysis.diff import KIND_TITLES, KINDS, Diff, VmaDiff
from ..kernel.maps import PAGE_SIZE
from ..model.state import FULL_BITS, LETTERS, PM_SHIFT, state_names
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-diff/1"
TITLES = [KIND_TITLES[k] for k in KINDS]  # by kind index


@functools.lru_cache(maxsize=1 << 12)
def letters(state: int) -> str:
    """Set bits only, as --flags=all letters (kpageflags ':' pagemap); '-' for an absent page.
    Cached: a diff of 30,000 changed VMAs has 90,000 changes of a few dozen distinct states."""
    if not state:
        return "-"
    k = "".join(LETTERS[b] for b in FULL_BITS if b < PM_SHIFT and state >> b & 1)
    p = "".join(LETTERS[b] for b in FULL_BITS if b >= PM_SHIFT and state >> b & 1)
    return f"{k}:{p}"


def _mc(v: int) -> int | None:
    return None if v < 0 else v


@functools.lru_cache(maxsize=1 << 12)
def _names(state: int) -> tuple[str, ...]:
    return tuple(state_names(state))


def change_dicts(v: VmaDiff) -> Iterator[dict[str, Any]]:
    """One JSON-ready dict per change range of a VMA."""
    for addr, pages, b, a, mb, ma, k in zip(v.addr.tolist(), v.pages.tolist(), v.before.tolist(), v.after.tolist(),
                                           v.mc_before.tolist(), v.mc_after.tolist(), v.kind.tolist()):
        yield {"addr": addr, "pages": pages, "bytes": pages * PAGE_SIZE, "change": KINDS[k],
               "before": list(_names(b)), "after": list(_names(a)), "mapcount_before": _mc(mb),
               "mapcount_after": _mc(ma)}


def vma_head(v: VmaDiff) -> dict[str, Any]:
    m = v.vma
    return {"start": m.start, "end": m.end, "perms": m.perms, "offset": m.offset, "dev": m.dev, "inode": m.inode,
            "path": m.path, "status": v.status}


def to_json(d: Diff) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "a": {"source": d.a_label, "time": d.a_time}, "b": {"source": d.b_label, "time": d.b_time},
        "totals": d.totals(),
        "vmas": [vma_head(v) | {"totals": v.totals(), "changes": list(change_dicts(v))} for v in d.vmas],
    }


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z" if t else "?"


CSV_HEADER = ["vma_start", "vma_end", "perms", "path", "status", "addr", "pages", "bytes", "change", "before", "after",
              "mapcount_before", "mapcount_after"]


@dataclass
class DiffView(View):
    diff: Diff
    schema: str = SCHEMA
    json_indent: int | None = 1

    def document(self) -> dict[str, Any]:
        return to_json(self.diff)

    def records(self) -> Iterable[dict[str, Any]]:
        for v in self.diff.vmas:
            head = vma_head(v)
            for c in change_dicts(v):
                yield {"vma": head} | c

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return CSV_HEADER, ([v.vma.start, v.vma.end, v.vma.perms, v.vma.path, v.status, c["addr"], c["pages"],
                             c["bytes"],
                             c["change"], " ".join(c["before"]), " ".join(c["after"]), c["mapcount_before"],
                             c["mapcount_after"]] for v in self.diff.vmas for c in change_dicts(v))

    def text(self, out: TextIO, unit: str) -> None:
        write_text(out, self.diff, unit)

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        """JSON: json.dumps(self.document(), indent=1)'s bytes, a VMA at a time (_json_vma): the
        whole document of 30,000 changed VMAs took 2.5 s and 400 MB; the other formats as any View's."""
        if fmt != "json" or self.json_indent != 1:
            super().write_to(out, fmt, unit)
            return
        d = self.diff
        head = json.dumps({"schema": SCHEMA, "a": {"source": d.a_label, "time": d.a_time},
                           "b": {"source": d.b_label, "time": d.b_time}, "totals": d.totals()}, indent=1)
        out.write(head[:-2] + ',\n "vmas": ')  # head ends "\n}"; a newline is never inside a JSON string
        if not d.vmas:
            out.write("[]\n}\n")
            return
        out.write("[\n")
        for i, v in enumerate(d.vmas):
            out.write(",\n" + _json_vma(v) if i else _json_vma(v))
        out.write("\n ]\n}\n")


def _json_vma(v: VmaDiff) -> str:
    """One element of the "vmas" list as json.dumps(to_json(d), indent=1) writes it (at depth 2)."""
    m = v.vma
    head = [f'  {{\n   "start": {m.start},\n   "end": {m.end},\n   "perms": {json.dumps(m.perms)},\n'
            f'   "offset": {m.offset},\n   "dev": {json.dumps(m.dev)},\n   "inode": {m.inode},\n'
            f'   "path": {json.dumps(m.path)},\n   "status": {json.dumps(v.status)},\n   "totals": ']
    tot = v.totals()
    head.append("{\n" + ",\n".join(f'    "{k}": {n}' for k, n in tot.items()) + "\n   }" if tot else "{}")
    head.append(',\n   "changes": [\n')
    rows = [f'    {{\n     "addr": {addr},\n     "pages": {pages},\n     "bytes": {pages * PAGE_SIZE},\n'
            f'     "change": "{KINDS[k]}",\n     "before": {_json_names(b)},\n     "after": {_json_names(a)},\n'
            f'     "mapcount_before": {_json_mc(mb)},\n     "mapcount_after": {_json_mc(ma)}\n    }}'
            for addr, pages, b, a, mb, ma, k in zip(v.addr.tolist(), v.pages.tolist(), v.before.tolist(),
                                                   v.after.tolist(), v.mc_before.tolist(), v.mc_after.tolist(),
                                                   v.kind.tolist())]
    return "".join(head) + ",\n".join(rows) + "\n   ]\n  }"


@functools.lru_cache(maxsize=1 << 12)
def _json_names(state: int) -> str:
    """A state's names as a JSON list at depth 5 (json.dumps indent=1)."""
    names = _names(state)
    return "[\n" + ",\n".join(f"      {json.dumps(n)}" for n in names) + "\n     ]" if names else "[]"


def _json_mc(v: int) -> str:
    return "null" if v < 0 else str(v)


def write_text(out: TextIO, d: Diff, unit: str = "human") -> None:
    """Per VMA its maps line, then one row per change range; totals by kind at the end."""
    dt = d.b_time - d.a_time if d.a_time and d.b_time else None
    out.write(f"# A: {printable(d.a_label)}  {_stamp(d.a_time)}\n# B: {printable(d.b_label)}  {_stamp(d.b_time)}"
              + (f"  (+{dt:.3f}s)" if dt is not None else "") + "\n")
    if not d.vmas:
        out.write("no page changed state\n")
        return
    size_h = "SIZE" + unit_header(unit)
    for piece in _change_lines(d, unit, size_h):
        out.write(piece)
    tot = d.totals()
    out.write("\n")
    write_table(out, ["CHANGE", "PAGES", size_h], [[KIND_TITLES[k], str(n), fmt_bytes(n * PAGE_SIZE, unit)]
                                                  for k, n in tot.items()], left=1,
                footer=[["total", str(sum(tot.values())), fmt_bytes(sum(tot.values()) * PAGE_SIZE, unit)]])


def _change_lines(d: Diff, unit: str, size_h: str) -> Iterator[str]:
    """Each VMA's maps line, then its changes as a table of its own (write_table's layout: ADDR and
    CHANGE left-aligned, the others right-aligned, BEFORE padded to read left-aligned), built for
    every change at once: a diff of 30,000 changed VMAs made as many write_table calls (0.6 s). The
    cells are made here from numbers and fixed names: none needs escaping, the maps line does.
    _VMAS_AT_ONCE VMAs a piece: the cells of every change at once would hold 100,000s of strings."""
    size = functools.lru_cache(maxsize=1 << 12)(lambda pages: fmt_bytes(pages * PAGE_SIZE, unit))
    for at in range(0, len(d.vmas), _VMAS_AT_ONCE):
        yield "".join(_vma_tables(d.vmas[at:at + _VMAS_AT_ONCE], size, size_h))


_VMAS_AT_ONCE = 4096


def _vma_tables(vs: list[VmaDiff], size: Callable[[int], str], size_h: str) -> Iterator[str]:
    """_change_lines of some VMAs."""
    cols = [np.concatenate([getattr(v, name) for v in vs]).tolist()
            for name in ("addr", "pages", "before", "after", "mc_before", "mc_after", "kind")]
    cells = [[f"  {a:x}" for a in cols[0]], [TITLES[k] for k in cols[6]], list(map(str, cols[1])),
             list(map(size, cols[1])), list(map(letters, cols[2])),
             [letters(a) + ("" if mb == ma else f" {_mc_text(mb)}->{_mc_text(ma)}")
              for a, mb, ma in zip(cols[3], cols[4], cols[5])]]
    head = ["  ADDR", "CHANGE", "PAGES", size_h, "BEFORE", "AFTER"]
    bounds = np.cumsum([0] + [len(v.addr) for v in vs])
    # Each VMA's column widths: the longest cell of its rows, and of the header.
    widths = np.stack([np.maximum(np.maximum.reduceat(np.fromiter(map(len, c), dtype=np.int64, count=len(c)),
                                                      bounds[:-1]), len(h))
                       for c, h in zip(cells, head)], axis=1).tolist()
    tags = {"both": "\n", "new": "  [new in B]\n", "gone": "  [gone in B]\n"}
    for v, (lo, hi), (w0, w1, w2, w3, w4, w5) in zip(vs, zip(bounds[:-1].tolist(), bounds[1:].tolist()), widths):
        yield printable(v.vma.maps_line()) + tags[v.status]
        spec = f"{{:<{w0}}} {{:<{w1}}} {{:>{w2}}} {{:>{w3}}} {{:<{w4}}} {{:>{w5}}}"
        yield spec.format(*head).rstrip() + "\n"
        for row in zip(*(c[lo:hi] for c in cells)):
            yield spec.format(*row).rstrip() + "\n"


def _mc_text(v: int) -> str:
    """A map count as text: '?' unknown (-1)."""
    return "?" if v < 0 else str(v)
