"""The page-range view: the 2007 text format, and JSON / NDJSON (schema pmaps/1).

Input is a stream of (VMA index, Pages) chunks in address order (collect.Process.chunks or a
Snapshot), so a huge process is written chunk by chunk; rows are built, then written.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import S_SWAPPED, Known, Pages, Ranges, flag_string, merge_boundary, ranges_of, state_names

SCHEMA = "pmaps/1"
VMA_SCHEMA = "pmaps-vma/1"

# (addr, index, count, mapcount or None, flags, names, pfn or None, swapped)
Row = tuple[int, int, int, "int | None", str, list[str], "int | None", bool]


@dataclass(frozen=True)
class ViewOptions:
    full: bool = False  # --flags=all: group by and print every flag
    with_pfn: bool = False  # --pfn
    swap: bool = False  # --swap: swapped-out ranges too


def vma_ranges(
    vmas: list[Vma], chunks: Iterable[tuple[int, Pages]], known: Callable[[], Known], *, full: bool,
    with_pfn: bool, swap: bool,
) -> Iterator[tuple[int, Ranges | None]]:
    """Events per VMA in order: (i, None) opens VMA i, then (i, Ranges) pieces, maximal across chunks."""
    nxt = 0
    cur = -1
    pending: Ranges | None = None
    for i, pages in chunks:
        r = ranges_of(pages, known(), full=full, with_pfn=with_pfn, swap=swap)
        if i != cur:
            if pending is not None and len(pending):
                yield cur, pending
            pending = None
            while nxt <= i:
                yield nxt, None
                nxt += 1
            cur = i
        if pending is None:
            pending = r
        else:
            pending, r = merge_boundary(pending, r)
            if len(r):
                yield cur, pending
                pending = r
    if pending is not None and len(pending):
        yield cur, pending
    while nxt < len(vmas):
        yield nxt, None
        nxt += 1


class RowBuilder:
    """Turns Ranges into rows; caches the flag text of each distinct state."""

    def __init__(self, known: Known, full_letters: bool) -> None:
        self.mask = int(known.mask())
        self.pfn_known = known.pfn
        self.full_letters = full_letters
        self._cache: dict[int, tuple[str, str, list[str]]] = {}

    def _flags(self, st: int) -> tuple[str, str, list[str]]:
        f = self._cache.get(st)
        if f is None:
            sw = bool(st >> S_SWAPPED & 1)
            f = (
                flag_string(st, self.mask, full=self.full_letters, swapped=sw and not self.full_letters),
                flag_string(st, self.mask, full=False, swapped=sw),
                state_names(st),
            )
            self._cache[st] = f
        return f

    def rows(self, vma: Vma, r: Ranges) -> list[Row]:
        base = vma.pgoff - (vma.start >> PAGE_SHIFT)
        pfns = r.pfn.tolist() if r.pfn is not None else [None] * len(r)
        out: list[Row] = []
        for vpn, cnt, st, mc, pfn in zip(r.vpn.tolist(), r.count.tolist(), r.state.tolist(), r.mapcount.tolist(), pfns):
            text, _rfc, names = self._flags(st)
            sw = bool(st >> S_SWAPPED & 1)
            out.append((vpn << PAGE_SHIFT, vpn + base, cnt, None if mc < 0 or sw else mc, text, names,
                        None if sw or not self.pfn_known else pfn, sw))
        return out

    def rfc(self, st: int) -> str:
        return self._flags(st)[1]


def write_text_rows(out: TextIO, rows: list[Row], with_pfn: bool = False) -> None:
    """INDEX COUNT FLAGS MAPCOUNT [PFN]: the RFC's range line ('?' unknown, '-' swapped)."""
    lines = []
    for _addr, index, count, mc, flags, _names, pfn, sw in rows:
        mcs = "-" if sw else ("?" if mc is None else str(mc))
        if not with_pfn:
            lines.append(f"{index} {count} {flags} {mcs}")
        else:
            lines.append(f"{index} {count} {flags} {mcs} " + ("-" if sw else "?" if pfn is None else f"{pfn:x}"))
    if lines:
        out.write("\n".join(lines) + "\n")


def vma_json_head(vma: Vma) -> dict[str, object]:
    return {"start": vma.start, "end": vma.end, "perms": vma.perms, "offset": vma.offset, "dev": vma.dev,
            "inode": vma.inode, "path": vma.path}


def json_ranges(builder: RowBuilder, vma: Vma, r: Ranges, with_pfn: bool) -> list[dict[str, object]]:
    out = []
    for (addr, index, count, mc, _flags, names, pfn, _sw), st in zip(builder.rows(vma, r), r.state.tolist()):
        d: dict[str, object] = {"addr": addr, "index": index, "count": count, "mapcount": mc,
                                "flags": builder.rfc(st), "names": names}
        if with_pfn:
            d["pfn"] = pfn
        out.append(d)
    return out


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


class RangeWriter:
    """Writes one process's page-range view in one format, streaming VMA by VMA."""

    def __init__(self, out: TextIO, fmt: str, opts: ViewOptions) -> None:
        self.out = out
        self.fmt = fmt
        self.opts = opts
        self.first_process = True

    def begin(self) -> None:
        if self.fmt == "json":
            self.out.write('{"schema":"%s","processes":[' % SCHEMA)

    def end(self) -> None:
        if self.fmt == "json":
            self.out.write("]}\n")

    def process(self, pid: int, comm: str, vmas: list[Vma], chunks: Iterable[tuple[int, Pages]],
                known: Callable[[], Known], header: bool) -> None:
        full = self.opts.full or self.fmt != "text"  # JSON groups by the full state
        events = vma_ranges(vmas, chunks, known, full=full, with_pfn=self.opts.with_pfn, swap=self.opts.swap)
        builder: RowBuilder | None = None
        out = self.out
        if self.fmt == "text":
            if header:
                out.write(f"# {pid} {comm}\n")
            for i, r in events:
                if r is None:
                    out.write(vmas[i].maps_line() + "\n")
                    continue
                builder = builder or RowBuilder(known(), self.opts.full)
                write_text_rows(out, builder.rows(vmas[i], r), self.opts.with_pfn)
            return
        if self.fmt == "json":
            if not self.first_process:
                out.write(",")
            out.write('{"pid":%d,"comm":%s,"vmas":[' % (pid, _dumps(comm)))
        self.first_process = False
        open_vma = -1
        for i, r in events:
            if r is None:
                if open_vma >= 0:
                    self._close_vma()
                self._open_vma(pid, comm, vmas[i], first=i == 0)
                open_vma = i
                first_range = True
                continue
            builder = builder or RowBuilder(known(), True)
            items = json_ranges(builder, vmas[i], r, self.opts.with_pfn)
            if items:
                body = ",".join(_dumps(x) for x in items)
                out.write(body if first_range else "," + body)
                first_range = False
        if open_vma >= 0:
            self._close_vma()
        if self.fmt == "json":
            # Written last: the first chunk may reveal that PFNs are hidden (collect.py).
            out.write('],"known":%s}' % _dumps(known().to_dict()))

    def _open_vma(self, pid: int, comm: str, vma: Vma, first: bool) -> None:
        head = vma_json_head(vma)
        if self.fmt == "ndjson":
            head = {"schema": VMA_SCHEMA, "pid": pid, "comm": comm, **head}
        elif not first:
            self.out.write(",")
        self.out.write(_dumps(head)[:-1] + ',"ranges":[')

    def _close_vma(self) -> None:
        self.out.write("]}\n" if self.fmt == "ndjson" else "]}")
