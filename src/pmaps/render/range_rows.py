"""From a source's chunks of pages to the page-range view's events and rows: ranges per VMA in
address order (vma_ranges from per-VMA chunks, batch_events from batches of many VMAs), and the
rows they become (RowBuilder: each distinct state formatted once; vma_rows/interleave: VMA lines
placed between range lines by index). Used by render.pmaps' RangeWriter and render.filepages."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..kernel.maps import PAGE_SHIFT, Vma
from ..model import Known, Pages, Ranges, flag_string, merge_boundary, ranges_of, state_names
from ..model.ranges import batch_ranges, ranges_by_group
from ..model.state import S_SWAPPED
from ..numeric import distinct
from .table import printable


def vma_ranges(
    vmas: list[Vma], chunks: Iterable[tuple[int, Pages]], known: Callable[[], Known], *, full: bool,
    with_pfn: bool, swap: bool,
) -> Iterator[tuple[int, Ranges | None]]:
    """Events per VMA in order: (i, None) opens VMA i, then (i, Ranges) pieces, maximal across chunks."""
    nxt = 0
    cur = -1
    pending: Ranges | None = None
    for i, r in _chunk_ranges(chunks, known, full=full, with_pfn=with_pfn, swap=swap):
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


def batch_events(vmas: list[Vma], groups: Iterable[tuple[Pages, np.ndarray]], known: Callable[[], Known], *,
                 full: bool, with_pfn: bool, swap: bool) -> Iterator[tuple[int, Ranges | None]]:
    """vma_ranges' events from batches of many VMAs (PageSource.groups): no per-VMA page slicing."""
    nxt = 0
    for upto, r, g in batch_ranges(groups, known, full=full, with_pfn=with_pfn, swap=swap):
        if len(r):
            cuts = (np.flatnonzero(g[1:] != g[:-1]) + 1).tolist()
            for a, b in zip([0, *cuts], [*cuts, len(g)]):
                i = int(g[a])
                while nxt <= i:
                    yield nxt, None
                    nxt += 1
                yield i, r.take(slice(a, b))
        while nxt < upto:
            yield nxt, None
            nxt += 1
    while nxt < len(vmas):
        yield nxt, None
        nxt += 1


BATCH_PAGES = 1 << 14  # small chunks (VMAs) gathered for one ranges pass


def _chunk_ranges(chunks: Iterable[tuple[int, Pages]], known: Callable[[], Known], *, full: bool, with_pfn: bool,
                  swap: bool) -> Iterator[tuple[int, Ranges]]:
    """(VMA index, Ranges) per chunk, small chunks computed together (ranges_by_group)."""
    buf: list[tuple[int, Pages]] = []
    size = 0

    def flush() -> Iterator[tuple[int, Ranges]]:
        if len(buf) == 1:
            yield buf[0][0], ranges_of(buf[0][1], known(), full=full, with_pfn=with_pfn, swap=swap)
        elif buf:
            pages = Pages.concat([p for _, p in buf])
            group = np.repeat(np.array([i for i, _ in buf], dtype=np.int64), [len(p) for _, p in buf])
            yield from ranges_by_group(pages, group, known(), full=full, with_pfn=with_pfn, swap=swap)
        buf.clear()

    for i, pages in chunks:
        if len(pages) >= BATCH_PAGES:
            yield from flush()
            size = 0
            yield i, ranges_of(pages, known(), full=full, with_pfn=with_pfn, swap=swap)
            continue
        buf.append((i, pages))
        size += len(pages)
        if size >= BATCH_PAGES:
            yield from flush()
            size = 0
    yield from flush()


class RowBuilder:
    """Turns Ranges into output rows. Each distinct (state, mapcount) pair is formatted once
    and cached, so a row costs one string join: no per-row dict or JSON encoding."""

    def __init__(self, known: Known, full_letters: bool, with_pfn: bool = False,
                 cgroup_names: dict[int, str] | None = None) -> None:
        self.mask = int(known.mask())
        self.pfn_known = known.pfn
        self.full_letters = full_letters
        self.with_pfn = with_pfn
        self.cgroup_names = cgroup_names
        self._text: dict[tuple[int, int], str] = {}
        self._json: dict[tuple[int, int], str] = {}

    def _text_tail(self, st: int, mc: int) -> str:
        sw = bool(st >> S_SWAPPED & 1)
        flags = flag_string(st, self.mask, full=self.full_letters, swapped=sw and not self.full_letters)
        mcs = "-" if sw else ("?" if mc < 0 else str(mc))
        return f" {flags} {mcs}"

    def _json_tail(self, st: int, mc: int) -> str:
        sw = bool(st >> S_SWAPPED & 1)
        return ',"mapcount":%s,"flags":%s,"names":%s' % (
            "null" if mc < 0 or sw else mc, json_compact(flag_string(st, self.mask, full=False, swapped=sw)),
            json_compact(state_names(st)))

    def _pfns(self, r: Ranges) -> list[str]:
        if r.pfn is None or not self.pfn_known:
            return ["?"] * len(r)
        swapped = (r.state >> np.uint64(S_SWAPPED)) & np.uint64(1)
        return ["-" if sw else f"{p:x}" for p, sw in zip(r.pfn.tolist(), swapped.tolist())]

    def text(self, vma: Vma, r: Ranges) -> str:
        """INDEX COUNT FLAGS MAPCOUNT [PFN] lines: the RFC's range line ('?' unknown, '-' swapped)."""
        lines = self.lines(r, r.vpn.astype(np.int64) + (vma.pgoff - (vma.start >> PAGE_SHIFT)))
        return "\n".join(lines) + "\n" if lines else ""

    def _tails(self, r: Ranges, cache: dict[tuple[int, int], str], make: Callable[[int, int], str]) -> list[str]:
        """The formatted (state, mapcount) part of each range: each distinct pair formatted once
        (there are a few), spread by one numpy gather rather than a dict lookup per range."""
        if len(r) < 64:
            return [cache[k] if k in cache else cache.setdefault(k, make(*k))
                    for k in zip(r.state.tolist(), r.mapcount.tolist())]
        uniq, inv = self._tail_index(r, cache, make)
        out: list[str] = np.array(uniq, dtype=object)[inv].tolist()
        return out

    @staticmethod
    def _tail_index(r: Ranges, cache: dict[tuple[int, int], str], make: Callable[[int, int], str]
                    ) -> tuple[list[str], np.ndarray]:
        """_tails as (each distinct tail, the index of each range's among them)."""
        order = np.lexsort((r.mapcount, r.state))
        st, mc = r.state[order], r.mapcount[order]
        new = np.ones(len(r), dtype=bool)
        new[1:] = (st[1:] != st[:-1]) | (mc[1:] != mc[:-1])
        firsts = np.flatnonzero(new)
        uniq = [cache[k] if k in cache else cache.setdefault(k, make(*k))
                for k in zip(st[firsts].tolist(), mc[firsts].tolist())]
        inv = np.empty(len(r), dtype=np.int64)
        inv[order] = np.cumsum(new) - 1
        return uniq, inv

    def lines(self, r: Ranges, index: np.ndarray) -> list[str]:
        """The text lines of ranges (of any VMAs), given each range's first page index."""
        tails = self._tails(r, self._text, self._text_tail)
        lines = [f"{i} {c}{t}" for i, c, t in zip(index.tolist(), r.count.tolist(), tails)]
        if self.with_pfn:
            lines = [f"{ln} {p}" for ln, p in zip(lines, self._pfns(r))]
        if self.cgroup_names is not None:
            lines = [f"{ln} {c}" for ln, c in zip(lines, self._cgroups(r))]
        return lines

    def _cgroups(self, r: Ranges) -> list[str]:
        """The memory cgroup path of each range ('?' unknown, '-' none: the zero page, swapped)."""
        if r.cgroup is None or self.cgroup_names is None:
            return ["?"] * len(r)
        names = self.cgroup_names
        return ["-" if c == 0 else printable(names.get(c, f"#{c}")) for c in r.cgroup.tolist()]

    def json_pieces(self, r: Ranges) -> tuple[list[str], np.ndarray, list[tuple[str, Any, np.ndarray]]]:
        """The JSON objects of ranges as rows_text pieces, for a writer that makes many at once:
        (each distinct tail (mapcount, flags, names: a few), the index of each range's, and the
        pieces after the tail: ',"pfn":...' and ',"cgroup":...' as a text choice and a number
        for each range)."""
        uniq, inv = self._tail_index(r, self._json, self._json_tail)
        extra: list[tuple[str, Any, np.ndarray]] = []
        if self.with_pfn:
            shown = np.zeros(len(r), dtype=bool)
            if r.pfn is not None and self.pfn_known:
                shown = ((r.state >> np.uint64(S_SWAPPED)) & np.uint64(1)) == 0
            pfn = r.pfn if r.pfn is not None else np.zeros(len(r), dtype=np.uint64)
            extra += [("text", [',"pfn":null', ',"pfn":'], shown.astype(np.int64)), ("number", pfn, shown)]
        if self.cgroup_names is not None:
            if r.cgroup is None:
                extra.append(("text", [',"cgroup":null'], np.zeros(len(r), dtype=np.int64)))
            else:
                ids, at = distinct(r.cgroup)
                names = self.cgroup_names
                texts = [',"cgroup":' + ("null" if c == 0 else json_compact(printable(names.get(c, f"#{c}"))))
                         for c in ids.tolist()]
                extra.append(("text", texts, at))
        return uniq, inv, extra

    def json(self, vma: Vma, r: Ranges) -> list[str]:
        """One JSON object (text) per range: addr, index, count, mapcount, flags, names[, pfn]."""
        base = vma.pgoff - (vma.start >> PAGE_SHIFT)
        tails = self._tails(r, self._json, self._json_tail)
        vpn = r.vpn.tolist()
        extra = [""] * len(vpn)
        if self.with_pfn:
            extra = [',"pfn":' + ("null" if p in ("?", "-") else str(int(p, 16))) for p in self._pfns(r)]
        if self.cgroup_names is not None:
            extra = [f'{e},"cgroup":' + ("null" if c in ("?", "-") else json_compact(c))
                     for e, c in zip(extra, self._cgroups(r))]
        return ['{"addr":%d,"index":%d,"count":%d%s%s}' % (v << PAGE_SHIFT, v + base, c, t, e)
                for v, c, t, e in zip(vpn, r.count.tolist(), tails, extra)]


def interleave(heads: list[str], lo: int, hi: int, items: list[str], g: np.ndarray) -> list[str]:
    """VMA lines heads[lo:hi] with the items (ranges' text) of each VMA after its own line, in
    order; g: the VMA index of each item (sorted; items of a VMA before lo come first)."""
    if not items:
        return heads[lo:hi]
    gi = g.astype(np.int64)
    # Each item follows the VMA lines up to its own; each VMA line follows the items of the VMAs before.
    ipos = np.arange(len(items), dtype=np.int64) + np.clip(gi - lo + 1, 0, hi - lo)
    hpos = np.arange(hi - lo, dtype=np.int64) + np.searchsorted(gi, np.arange(lo, hi), side="left")
    merged = np.empty(len(items) + hi - lo, dtype=object)
    merged[ipos] = items
    merged[hpos] = heads[lo:hi]
    out: list[str] = merged.tolist()
    return out


def vma_rows(closed: int, lo: int, hi: int, upto: int, g: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The rows of a batch's text, in order: the opening of each VMA of [lo, hi), the items (ranges)
    of VMAs (g: the VMA of each item, sorted, none before `closed`), each after its VMA's opening,
    and a close after the last row of each VMA of [closed, upto) (a row of its own for a VMA with
    no other row here). VMAs before `closed` are closed already, those of [closed, lo) open.
    Returns per row (its VMA, its item or -1, whether it opens its VMA, whether it closes it), and
    how many rows the VMAs closed here fill: the whole VMAs end there."""
    nv = max(hi, upto) - closed
    if nv <= 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e.astype(bool), e.astype(bool), 0
    vi = np.arange(closed, closed + nv, dtype=np.int64)
    gi = g.astype(np.int64) - closed
    has_open = ((vi >= lo) & (vi < hi)).astype(np.int64)
    n_items = np.bincount(gi, minlength=nv) if len(gi) else np.zeros(nv, dtype=np.int64)
    closes = vi < upto
    bare = closes & (has_open + n_items == 0)
    cnt = has_open + n_items + bare
    ends = np.cumsum(cnt)
    start = ends - cnt
    total = int(ends[-1])
    row_vma = np.repeat(vi, cnt)
    row_item = np.full(total, -1, dtype=np.int64)
    if len(gi):
        rank = np.arange(len(gi), dtype=np.int64) - np.searchsorted(gi, gi, side="left")
        row_item[start[gi] + has_open[gi] + rank] = np.arange(len(gi), dtype=np.int64)
    opens = np.zeros(total, dtype=bool)
    opens[start[has_open.astype(bool)]] = True
    closing = np.zeros(total, dtype=bool)
    closing[ends[closes] - 1] = True
    cut = int(ends[upto - closed - 1]) if upto > closed else 0
    return row_vma, row_item, opens, closing, cut


def perm_dev_pairs(perms: tuple[list[str], np.ndarray], devs: tuple[list[str], np.ndarray]
           ) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Each distinct (perms, dev) pair of the VMAs, and the index of each VMA's among them, from
    each field's distinct values and index (VmaTable.kinds)."""
    (pv, pi), (dv, di) = perms, devs
    uniq, inv = distinct(pi * len(dv) + di)
    return [(pv[c // len(dv)], dv[c % len(dv)]) for c in uniq.tolist()], inv


def json_compact(obj: object) -> str:
    import json  # here: the json package is 3-4 ms of every text command's start-up otherwise

    return json.dumps(obj, separators=(",", ":"))


# A JSON string, as json.dumps writes it (ASCII, escaped), without json.dumps' per-call set-up: the
# json package's own encoder (its C accelerator, _json, without the package's import).
try:
    from _json import encode_basestring_ascii as _encode_ascii
except ImportError:  # an interpreter without the accelerator
    from json.encoder import py_encode_basestring_ascii as _encode_ascii
json_str: Callable[[str], str] = _encode_ascii
