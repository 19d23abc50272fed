"""The page-range view: the 2007 text format, and JSON / NDJSON (schema pmaps/1).

Input is a stream of (VMA index, Pages) chunks in address order (a PageSource: a live
collector.Process or a Snapshot), so a huge process is written chunk by chunk; rows are built,
then written. This is the one streaming View: its write_to reads while it writes.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import numpy as np

from ..errors import PmapsError
from ..kernel.maps import PAGE_SHIFT, Vma, VmaTable
from ..model import Known, Pages, PageSource, Ranges, flag_string, state_names
from ..model.ranges import batch_ranges
from ..model.snapshot import vma_table
from ..model.state import S_SWAPPED
from ..textrows import rows_text
from .output import View
from .range_rows import (
    RowBuilder,
    batch_events,
    interleave,
    json_compact,
    json_str,
    perm_dev_pairs,
    vma_ranges,
    vma_rows,
)
from .table import csv_text, printable, unprintable

SCHEMA = "pmaps/1"
VMA_SCHEMA = "pmaps-vma/1"
SPOOL_BYTES = 32 << 20  # a process's JSON document held in memory up to this, then in a temporary file
WRITE_BYTES = 1 << 20  # whole VMAs' JSON gathered up to this much text per write
ROWS = 1 << 12  # rows of JSON text (VMA openings, ranges) made at once (textrows.rows_text)
CSV_HEADER = ["pid", "comm", "vma_start", "vma_end", "perms", "path", "addr", "index", "count", "flags", "mapcount",
              "names"]


@dataclass(frozen=True)
class ViewOptions:
    full: bool = False  # --flags=all: group by and print every flag
    with_pfn: bool = False  # --pfn
    swap: bool = False  # --swap: swapped-out ranges too
    cgroup_names: dict[int, str] | None = None  # --cgroup: memcg inode -> path (kernel.cgroup.memcg_dirs)


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
        elif self.fmt == "csv":
            import csv  # only here and in _csv: off the text view's start-up

            csv.writer(self.out, lineterminator="\n").writerow(CSV_HEADER + (["pfn"] if self.opts.with_pfn else []))

    def end(self) -> None:
        if self.fmt == "json":
            self.out.write("]}\n")

    def process(self, pid: int, comm: str, vmas: list[Vma] | VmaTable, chunks: Iterable[tuple[int, Pages]],
                known: Callable[[], Known], header: bool,
                groups: Iterable[tuple[Pages, np.ndarray]] | None = None) -> None:
        """One process's view; `vmas` as a VmaTable keeps the batch paths free of Vma objects."""
        full = self.opts.full or self.fmt != "text"  # JSON groups by the full state
        table = VmaTable.of(vmas)
        if self.fmt == "text" and groups is not None:
            if header:
                self.out.write(f"# {pid} {printable(comm)}\n")
            self._text_batches(table, groups, known)
            return
        if self.fmt in ("json", "ndjson") and groups is not None:
            self._json_batches(pid, comm, table, groups, known)
            return
        vmas = table.vmas
        if groups is not None:
            events = batch_events(vmas, groups, known, full=full, with_pfn=self.opts.with_pfn, swap=self.opts.swap)
        else:
            events = vma_ranges(vmas, chunks, known, full=full, with_pfn=self.opts.with_pfn, swap=self.opts.swap)
        builder: RowBuilder | None = None
        out = self.out
        if self.fmt == "text":
            if header:
                out.write(f"# {pid} {printable(comm)}\n")
            for i, r in events:
                if r is None:
                    out.write(printable(vmas[i].maps_line()) + "\n")
                    continue
                builder = builder or RowBuilder(known(), self.opts.full, self.opts.with_pfn, self.opts.cgroup_names)
                out.write(builder.text(vmas[i], r))
            return
        if self.fmt == "csv":
            self._csv(pid, comm, vmas, events, known)
            return
        if self.fmt == "json":
            if not self.first_process:
                out.write(",")
            out.write('{"pid":%d,"comm":%s,"vmas":[' % (pid, json_compact(comm)))
        self.first_process = False
        # Each VMA is assembled, then written whole: an NDJSON line is never left half written
        # when the process exits mid-scan.
        # Whole VMAs are gathered and written some at a time (fewer writes; still never half a line).
        parts: list[str] = []
        done: list[str] = []
        size = 0
        ndjson = self.fmt == "ndjson"
        prefix = ('{"schema":"%s","pid":%d,"comm":%s,' % (VMA_SCHEMA, pid, json_str(comm))) if ndjson else "{"
        for i, r in events:
            if r is None:
                if parts:
                    done.append(self._vma_text(parts))
                    size += len(done[-1])
                    if size >= WRITE_BYTES:
                        out.write("".join(done))
                        done, size = [], 0
                v = vmas[i]
                parts = [("," if self.fmt == "json" and i else "") + prefix
                         + '"start":%d,"end":%d,"perms":%s,"offset":%d,"dev":%s,"inode":%d,"path":%s,"ranges":['
                         % (v.start, v.end, json_str(v.perms), v.offset, json_str(v.dev), v.inode, json_str(v.path))]
                continue
            builder = builder or RowBuilder(known(), True, self.opts.with_pfn, self.opts.cgroup_names)
            items = builder.json(vmas[i], r)
            if items:
                parts.append(("," if len(parts) > 1 else "") + ",".join(items))
        if parts:
            done.append(self._vma_text(parts))
        out.write("".join(done))
        if self.fmt == "json":
            # Written last: the first chunk may reveal that PFNs are hidden (collect.py).
            out.write('],"known":%s}' % json_compact(known().to_dict()))

    def _json_batches(self, pid: int, comm: str, table: VmaTable, groups: Iterable[tuple[Pages, np.ndarray]],
                      known: Callable[[], Known]) -> None:
        """JSON / NDJSON a batch of many VMAs at a time, as _text_batches: a batch's text is rows (a
        VMA's opening, a range's object), each a few texts chosen among a few and numbers, made by
        numpy (textrows.rows_text): no Python string or int to text per VMA or range but for the
        VMAs with an offset, inode or path. Only whole VMAs are written (the text of a VMA still open
        is held back): an NDJSON line is never left half written when the process exits mid-scan."""
        out = self.out
        ndjson = self.fmt == "ndjson"
        if not ndjson:
            if not self.first_process:
                out.write(",")
            out.write('{"pid":%d,"comm":%s,"vmas":[' % (pid, json_compact(comm)))
        self.first_process = False
        prefix = ('{"schema":"%s","pid":%d,"comm":%s,' % (VMA_SCHEMA, pid, json_str(comm))) if ndjson else "{"
        # A row's first text: a range's object, a VMA's opening (in JSON after a comma but the
        # first VMA's), nothing (a row that only closes its VMA).
        firsts = ['{"addr":', ("" if ndjson else ",") + prefix + '"start":', prefix + '"start":', ""]
        seconds = [',"index":', ',"end":', ',"end":', ""]
        thirds = [',"count":', ",", ",", ""]
        # A row's last: the end of a range's object (then a comma when the VMA has more), the end of
        # its VMA's.
        close = "]}\n" if ndjson else "]}"
        lasts = ["", "}", "},", close, "}" + close]
        starts, ends, offsets, inodes = table.start, table.end, table.offset, table.inode
        (pv, pi), (dv, di) = perms, devs = table.kinds("perms"), table.kinds("dev")
        paths_all = table.path
        # After start and end, an opening is the same text for every VMA of the same perms and dev
        # with no offset, inode or path (most of a process of many VMAs): made once per such pair;
        # the others' one by one.
        kinds = perm_dev_pairs(perms, devs)
        plain = (offsets == 0) & (inodes == 0) & ~table.named
        rest = '"perms":%s,"offset":%d,"dev":%s,"inode":%d,"path":%s,"ranges":['
        open_tails = [rest % (json_str(p), 0, json_str(d), 0, '""') for p, d in kinds[0]] + [""]
        open_tail = np.where(plain, kinds[1], len(kinds[0]))
        base = (table.offset >> np.uint64(PAGE_SHIFT)).astype(np.int64) - table.start_page.astype(np.int64)
        z = np.zeros(1, dtype=np.uint64)
        builder: RowBuilder | None = None

        def text(closed: int, lo: int, hi: int, upto: int, g: np.ndarray, r: Ranges | None, comma: np.ndarray
                 ) -> tuple[list[str], str]:
            """The text of a batch: (the rows of the VMAs it closes, some thousand at a time; the
            rows of the VMA still open)."""
            row_vma, row_item, opens, closing, cut = vma_rows(closed, lo, hi, upto, g)
            addr = index = count = z
            uniq: list[str] = []
            inv = np.zeros(1, dtype=np.int64)
            extra: list[tuple[str, Any, np.ndarray]] = []
            if r is not None and len(r):
                assert builder is not None
                addr = r.vpn << np.uint64(PAGE_SHIFT)
                index = (r.vpn.astype(np.int64) + base[g]).astype(np.uint64)
                count = r.count.astype(np.uint64)
                uniq, inv, extra = builder.json_pieces(r)
            # A row's tail (spliced in): a range's mapcount, flags and names, a VMA's opening after
            # its end; nothing in a row that only closes its VMA.
            tails = np.array([*open_tails, *uniq, ""], dtype=object)
            done: list[str] = []
            held = ""
            a = 0
            while a < len(row_vma):
                b = min(a + ROWS, len(row_vma))
                if a < cut < b:
                    b = cut
                rv, ri, op = row_vma[a:b], row_item[a:b], opens[a:b]
                item = ri >= 0
                it = np.maximum(ri, 0)
                kind = np.where(item, 0, np.where(op, np.where(rv == 0, 2, 1), 3))
                tail = tails[np.where(item, len(open_tails) + inv[it], np.where(op, open_tail[rv], len(tails) - 1))]
                own = np.flatnonzero(op & ~plain[rv])
                if len(own):
                    tail[own] = [rest % (json_str(pv[pi[i]]), int(offsets[i]), json_str(dv[di[i]]), int(inodes[i]),
                                         json_str(paths_all[i])) for i in rv[own].tolist()]
                last = 3 * closing[a:b]
                if len(comma):
                    last = last + np.where(item, 1 + comma[it], 0)
                pieces: list[tuple[str, Any, np.ndarray | None]] = [
                    ("text", firsts, kind), ("number", np.where(item, addr[it], starts[rv]), kind < 3),
                    ("text", seconds, kind), ("number", np.where(item, index[it], ends[rv]), kind < 3),
                    ("text", thirds, kind), ("number", count[it], item), ("splice", tail, None)]
                for what, values, sel in extra:  # pfn, cgroup: nothing in a row that is not a range's
                    if what == "text":
                        pieces.append(("text", ["", *values], np.where(item, sel[it] + 1, 0)))
                    else:
                        pieces.append(("number", values[it], item & sel[it]))
                pieces.append(("text", lasts, last))
                s = rows_text(pieces, b - a)
                if b <= cut:
                    done.append(s)
                else:
                    held += s
                a = b
            return done, held

        held = ""  # the text of the VMA still open
        nxt = closed = 0  # VMAs opened, closed
        for upto, r, g in batch_ranges(groups, known, full=True, with_pfn=self.opts.with_pfn, swap=self.opts.swap):
            hi = max(upto, int(g[-1]) + 1) if len(r) else upto
            comma = np.zeros(0, dtype=np.int64)
            if len(r):
                builder = builder or RowBuilder(known(), True, self.opts.with_pfn, self.opts.cgroup_names)
                # A comma after each range but a VMA's last; the range held back for the next batch
                # (batch_ranges) is of VMA `upto`.
                c = np.empty(len(g), dtype=bool)
                c[:-1] = g[1:] == g[:-1]
                c[-1] = g[-1] == upto
                comma = c.astype(np.int64)
            done, rest_text = text(closed, nxt, hi, upto, g, r, comma)
            if done:
                out.write(held)
                held = ""
                for s in done:
                    out.write(s)
            held += rest_text
            nxt, closed = max(nxt, hi), max(closed, upto)
        n = len(table)
        done, rest_text = text(closed, nxt, n, n, np.zeros(0, dtype=np.int64), None, np.zeros(0, dtype=np.int64))
        out.write(held + "".join(done) + rest_text)
        if not ndjson:
            # Written last: the first chunk may reveal that PFNs are hidden (collect.py).
            out.write('],"known":%s}' % json_compact(known().to_dict()))

    def _text_batches(self, table: VmaTable, groups: Iterable[tuple[Pages, np.ndarray]],
                      known: Callable[[], Known]) -> None:
        """The text view a batch of many VMAs at a time: one numpy pass for the ranges, one list of
        lines per batch, and the VMA lines put between them by index (interleave): no Python per VMA."""
        out = self.out
        builder: RowBuilder | None = None
        heads = table.headers()
        if not table.plain and unprintable("".join(heads)):
            heads = [printable(h) for h in heads]
        base = (table.offset >> np.uint64(PAGE_SHIFT)).astype(np.int64) - table.start_page.astype(np.int64)
        nxt = 0
        for upto, r, g in batch_ranges(groups, known, full=self.opts.full, with_pfn=self.opts.with_pfn,
                                       swap=self.opts.swap):
            # VMAs before `upto` are complete: their lines go out now even when they hold no range.
            hi = max(upto, int(g[-1]) + 1) if len(r) else upto
            lines: list[str] = []
            if len(r):
                builder = builder or RowBuilder(known(), self.opts.full, self.opts.with_pfn, self.opts.cgroup_names)
                lines = builder.lines(r, r.vpn.astype(np.int64) + base[g])
            if hi > nxt or lines:
                out.write("\n".join(interleave(heads, nxt, hi, lines, g)) + "\n")
            nxt = max(nxt, hi)
        if nxt < len(heads):
            out.write("\n".join(heads[nxt:]) + "\n")

    def _csv(self, pid: int, comm: str, vmas: list[Vma], events: Iterable[tuple[int, Ranges | None]],
             known: Callable[[], Known]) -> None:
        """One row per range (numbers in decimal, names space-separated), a VMA at a time."""
        import csv

        w = csv.writer(self.out, lineterminator="\n")
        comm = csv_text(comm)  # never a spreadsheet formula (safetext)
        for i, r in events:
            if r is None:
                continue
            v = vmas[i]
            path = csv_text(v.path)
            mask = int(known().mask())
            base = v.pgoff - (v.start >> PAGE_SHIFT)
            pfns = r.pfn.tolist() if self.opts.with_pfn and r.pfn is not None and known().pfn else None
            rows = []
            for j, (vpn, count, st, mc) in enumerate(zip(r.vpn.tolist(), r.count.tolist(), r.state.tolist(),
                                                         r.mapcount.tolist())):
                sw = bool(st >> S_SWAPPED & 1)
                row = [pid, comm, v.start, v.end, v.perms, path, vpn << PAGE_SHIFT, vpn + base, count,
                       flag_string(st, mask, full=False, swapped=sw), "" if mc < 0 or sw else mc,
                       " ".join(state_names(st))]
                if self.opts.with_pfn:
                    row.append("" if pfns is None or sw else pfns[j])
                rows.append(row)
            w.writerows(rows)

    def _vma_text(self, parts: list[str]) -> str:
        parts.append("]}\n" if self.fmt == "ndjson" else "]}")
        return "".join(parts)


class _Held:
    """Text held back until it is whole, then written: in memory up to `limit` characters, then in
    an unnamed temporary file (a huge process's JSON document is not all in memory). What stays in
    memory is written as the strings it was made of: no copy, and none of SpooledTemporaryFile's
    encoding into a BytesIO, copy at rollover and decoding back (~35 ms for a 23 MB document)."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.file: BinaryIO | None = None

    def write(self, s: str) -> int:
        if self.file is not None:
            self.file.write(s.encode())
        else:
            self.parts.append(s)
            self.size += len(s)
            if self.size > self.limit:
                import tempfile  # only here: its import (and shutil's) is 3 ms of start-up

                self.file = tempfile.TemporaryFile()
                for p in self.parts:
                    self.file.write(p.encode())
                self.parts = []
        return len(s)

    def write_to(self, out: TextIO) -> None:
        """Write the held text to `out`."""
        for p in self.parts:
            out.write(p)
        if self.file is not None:
            self.file.seek(0)
            text = io.TextIOWrapper(self.file, encoding="utf-8")
            while chunk := text.read(1 << 20):
                out.write(chunk)
            text.detach()

    def close(self) -> None:
        self.parts = []
        if self.file is not None:
            self.file.close()


@dataclass
class PageRangesView(View):
    """The 2007 view of several sources, streamed. A source that fails mid-way (a process exiting)
    goes to `on_error` and the others are still written; `on_done` sees each finished source."""

    sources: Iterable[PageSource]
    opts: ViewOptions = field(default_factory=ViewOptions)
    header: bool = False
    on_error: Callable[[PmapsError], None] | None = None
    on_done: Callable[[PageSource], None] | None = None
    schema: str = SCHEMA
    formats: tuple[str, ...] = ("text", "json", "ndjson", "csv")

    def text(self, out: TextIO, unit: str) -> None:
        self.write_to(out, "text", unit)

    def write_to(self, out: TextIO, fmt: str, unit: str) -> None:
        writer = RangeWriter(out, fmt, self.opts)
        writer.begin()
        for src in self.sources:
            try:
                if fmt in ("text", "ndjson", "csv"):
                    # Streamed: text line by line, NDJSON a whole VMA line at a time.
                    writer.process(src.pid, src.comm, vma_table(src), src.chunks(),
                                   lambda s=src: s.known,  # type: ignore[misc]
                                   header=self.header, groups=src.groups())
                else:
                    # A JSON document is built per process, then written whole: a process that
                    # exits mid-scan must not leave a half-written document behind (_Held).
                    held = _Held(SPOOL_BYTES)
                    try:
                        sub = RangeWriter(held, fmt, self.opts)  # type: ignore[arg-type]
                        sub.first_process = writer.first_process
                        sub.process(src.pid, src.comm, vma_table(src), src.chunks(),
                                    lambda s=src: s.known,  # type: ignore[misc]
                                    header=False, groups=src.groups())
                        held.write_to(out)
                    finally:
                        held.close()
                    writer.first_process = False
            except PmapsError as e:
                if self.on_error is None:
                    raise
                self.on_error(e)
                continue
            if self.on_done is not None:
                self.on_done(src)
        writer.end()
