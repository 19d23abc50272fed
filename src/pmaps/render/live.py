"""`pmaps watch` view-model and its two writers: a plain aligned table and a rich renderable.

The view is built from the current sample, the previous one and their diff; rich is imported
only by `rich_view`, inside the function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TextIO

import numpy as np

from ..analysis.diff import KIND_TITLES, KINDS, Diff
from ..analysis.footprint import Facts, figures
from ..kernel.maps import PAGE_SIZE, VmaTable
from ..model import Sample
from .table import cell_matrix, char_matrix, hex_ranges, printable, write_columns
from .units import fmt_bytes

STATS = ("resident", "swapped", "dirty", "thp")
SORTS = ("address", "resident", "change")
KIND_STYLE = {"present": "green", "freed": "red", "swapped_out": "magenta", "swapped_in": "cyan",
              "dirtied": "yellow", "lost_sharing": "blue", "gained_sharing": "bright_blue", "flags": "white"}
KIND_SHORT = {"present": "+", "freed": "-", "swapped_out": "out", "swapped_in": "in", "dirtied": "dirty",
              "lost_sharing": "unshared", "gained_sharing": "shared", "flags": "flags"}


# Watch's columns and the footprint engine's figures they show, by smaps' rules: the zero page is
# not resident; THP is AnonHugePages (anonymous memory mapped by a PMD).
FIGURE_OF = {"resident": "rss", "swapped": "swap", "dirty": "dirty", "thp": "anon_thp"}


def vma_figures(s: Sample) -> tuple[np.ndarray, frozenset[str]]:
    """Pages per VMA of the sample, one row per VMA: (resident, swapped, dirty, thp) in STATS
    order, int64; and the columns these samples cannot tell."""
    figs = figures(Facts.of_sample(s), tuple(FIGURE_OF.values()))
    sums = figs.by_group(s.vma, len(s.table))
    unknown = frozenset(k for k, f in FIGURE_OF.items() if f in figs.unknown)
    cols = np.stack([sums[FIGURE_OF[k]] for k in STATS], axis=1) if len(STATS) else np.zeros((len(s.table), 0))
    return cols.astype(np.int64).reshape(len(s.table), len(STATS)), unknown


@dataclass
class Row:
    start: int
    end: int
    perms: str
    name: str
    now: dict[str, int]
    delta: dict[str, int | None]  # None: no previous sample of this VMA
    changes: dict[str, int]  # pages per change kind since the previous sample

    @property
    def changed(self) -> int:
        return sum(self.changes.values())


@dataclass
class WatchRows:
    """The shown VMAs as columns, one element per row: a process of 65,000 VMAs is a few numpy
    passes, not 65,000 Row objects."""

    start: np.ndarray  # u64
    end: np.ndarray
    perm_kinds: tuple[list[str], np.ndarray]  # the distinct perms, and each row's index among them
    name: list[str]
    now: np.ndarray  # int64 (rows, STATS): pages
    delta: np.ndarray  # int64 (rows, STATS): pages since the previous sample
    had: np.ndarray  # bool: the previous sample had this VMA (else no delta)
    changes: np.ndarray  # int64 (rows, KINDS): pages per change kind since the previous sample

    def __len__(self) -> int:
        return len(self.start)

    @cached_property
    def perms(self) -> list[str]:
        values, idx = self.perm_kinds
        return list(map(values.__getitem__, idx.tolist()))

    def take(self, idx: np.ndarray) -> WatchRows:
        values, codes = self.perm_kinds
        return WatchRows(self.start[idx], self.end[idx], (values, codes[idx]), _pick(self.name, idx),
                         self.now[idx], self.delta[idx], self.had[idx], self.changes[idx])

    def row(self, i: int) -> Row:
        now = dict(zip(STATS, self.now[i].tolist()))
        none: dict[str, int | None] = dict.fromkeys(STATS)
        delta: dict[str, int | None] = dict(zip(STATS, self.delta[i].tolist())) if self.had[i] else none
        changes = {k: n for k, n in zip(KINDS, self.changes[i].tolist()) if n}
        return Row(int(self.start[i]), int(self.end[i]), self.perms[i], self.name[i], now, delta, changes)


def _pick(items: list[str], idx: np.ndarray) -> list[str]:
    """[items[i] for i in idx]; for increasing indexes in a few runs (the VMAs kept, all but a
    few), as slices of the list: a frame of 65,000 VMAs copies runs, not 65,000 items one by one."""
    n = len(idx)
    if n > 64:
        brk = np.flatnonzero(np.diff(idx) != 1) + 1
        if len(brk) < n // 64:
            firsts = [0, *brk.tolist()]
            lasts = [*brk.tolist(), n]
            lo, hi = idx[firsts].tolist(), (idx[np.array(lasts) - 1] + 1).tolist()
            out: list[str] = []
            for a, b in zip(lo, hi):
                out += items[a:b]
            return out
    return list(map(items.__getitem__, idx.tolist()))


@dataclass
class WatchView:
    pid: int
    comm: str
    seq: int
    cols: WatchRows
    cost_ms: float  # wall time of the last sample
    cpu_pct: float  # pmaps' own CPU time over the last cycle, % of one core
    interval: float
    fields: str
    status: list[str] = field(default_factory=list)  # notes: slowed down, paused, ...
    sort: str = "address"
    unknown: frozenset[str] = frozenset()  # columns these samples cannot tell ('?')

    @classmethod
    def build(cls, cur: Sample, prev: Sample | None, diff: Diff | None, *, cost_ms: float, cpu_pct: float,
              interval: float, fields: str, sort: str = "address", status: list[str] | None = None,
              all_vmas: bool = False) -> WatchView:
        t = cur.table
        n = len(t)
        now, unknown = vma_figures(cur)
        if prev is None:
            had = np.zeros(n, dtype=bool)
            delta = np.zeros_like(now)
        else:
            # The previous sample's figures of the same VMA (same start and end).
            old = prev.table.find(t)
            had = old >= 0
            delta = np.where(had[:, None], now - vma_figures(prev)[0][np.maximum(old, 0)], 0) if len(prev.table) \
                else np.zeros_like(now)
        changes = np.zeros((n, len(KINDS)), dtype=np.int64)
        touched = np.zeros(n, dtype=bool)
        if diff is not None and diff.vmas:
            vs = [vd.vma for vd in diff.vmas]
            where = t.find(VmaTable(np.array([v.start for v in vs], dtype=np.uint64),
                                    np.array([v.end for v in vs], dtype=np.uint64), np.zeros(len(vs), np.uint64),
                                    np.zeros(len(vs), np.uint64)))
            kind = np.concatenate([vd.kind for vd in diff.vmas])
            pages = np.concatenate([vd.pages for vd in diff.vmas])
            owner = np.repeat(where, [len(vd.kind) for vd in diff.vmas])
            ok = owner >= 0
            np.add.at(changes, (owner[ok], kind[ok]), pages[ok])
            touched[where[where >= 0]] = True
        keep = np.arange(n) if all_vmas else np.flatnonzero(now.any(axis=1) | touched)
        rows = WatchRows(t.start, t.end, t.kinds("perms"), t.path, now, delta, had, changes)
        view = cls(cur.pid, cur.comm, cur.seq, rows if len(keep) == n else rows.take(keep), cost_ms, cpu_pct,
                   interval, fields, list(status or []), sort, unknown)
        view.sort_rows()
        return view

    def __len__(self) -> int:
        return len(self.cols)

    @cached_property
    def rows(self) -> list[Row]:
        """The rows as Row objects (made on first use: the plain frame writes the columns)."""
        return [self.cols.row(i) for i in range(len(self.cols))]

    def head(self, n: int) -> list[Row]:
        """The first n rows as Row objects, without making the others."""
        if "rows" in self.__dict__:
            return self.rows[:n]
        return [self.cols.row(i) for i in range(min(n, len(self.cols)))]

    def sort_rows(self) -> None:
        c = self.cols
        if self.sort == "address" and bool((c.start[1:] > c.start[:-1]).all()):
            pass  # in address order already, as maps lists the VMAs: no sort
        else:
            if self.sort == "resident":
                key = -c.now[:, STATS.index("resident")]
            elif self.sort == "change":
                key = -c.changes.sum(axis=1)
            else:
                key = np.zeros(len(c), dtype=np.int64)
            order = np.lexsort((c.start, key))  # stable, as sorted() by (key, start) is
            if (order != np.arange(len(c))).any():
                self.cols = c.take(order)
        self.__dict__.pop("rows", None)

    def header(self) -> str:
        return (f"pmaps watch {self.pid} ({printable(self.comm)})  sample {self.seq}  every {self.interval:g}s  "
                f"fields {self.fields}  cost {self.cost_ms:.1f} ms/sample, {self.cpu_pct:.1f}% of a core  "
                f"sort {self.sort}")

    def totals(self) -> dict[str, int]:
        sums = self.cols.now.sum(axis=0).tolist()
        return dict(zip(STATS, sums))


def _delta(d: int | None, unit: str) -> str:
    if not d:
        return ""
    return ("+" if d > 0 else "-") + fmt_bytes(abs(d) * PAGE_SIZE, unit)


def _changed(changes: dict[str, int], unit: str) -> str:
    return " ".join(f"{KIND_SHORT[k]}{fmt_bytes(n * PAGE_SIZE, unit)}" for k, n in changes.items())


def _cells(r: Row, unit: str, unknown: frozenset[str]) -> list[str]:
    cells = [f"{r.start:x}-{r.end:x}", r.perms]
    for k in STATS:
        if k in unknown:
            cells += ["?", ""]
            continue
        cells += [fmt_bytes(r.now[k] * PAGE_SIZE, unit), _delta(r.delta[k], unit)]
    cells.append(_changed(r.changes, unit))
    cells.append(printable(r.name))
    return cells


HEAD = ["ADDRESS", "PERMS", "RSS", "ΔRSS", "SWAP", "ΔSWAP", "DIRTY", "ΔDIRTY", "THP", "ΔTHP", "CHANGED", "MAPPING"]


def _plain_columns(view: WatchView, unit: str, head: list[str], foot: list[str]) -> list[np.ndarray]:
    """The frame's cells column by column (_cells' text for every row) as matrices of character
    codes, padded as write_table would (ADDRESS and PERMS left-aligned, the others right-aligned)
    to at least their header and footer: each distinct figure formatted and padded once, the
    CHANGED text made only for the rows that changed."""
    c = view.cols
    n = len(c)
    # Each distinct perms (of those shown) made a row of characters once, then gathered.
    values, idx = c.perm_kinds
    used = np.bincount(idx, minlength=len(values)).astype(bool).tolist()
    texts = [printable(p) if u else "" for p, u in zip(values, used)]
    cols = [hex_ranges(c.start, c.end), char_matrix(texts, max(map(len, texts), default=0), left=True)[idx]]
    for j, k in enumerate(STATS):
        w_now, w_delta = (max(len(head[x]), len(foot[x])) for x in (2 + 2 * j, 3 + 2 * j))
        if k in view.unknown:
            cols += [np.repeat(char_matrix(["?"], w_now, left=False), n, axis=0), np.full((n, w_delta), 32, np.uint8)]
            continue
        cols.append(cell_matrix(c.now[:, j], lambda x: fmt_bytes(x * PAGE_SIZE, unit), w_now))
        cols.append(cell_matrix(np.where(c.had, c.delta[:, j], 0), lambda d: _delta(d, unit), w_delta))
    rows = np.flatnonzero(c.changes.any(axis=1))
    text = [_changed({k: x for k, x in zip(KINDS, c.changes[i].tolist()) if x}, unit) for i in rows.tolist()]
    some = char_matrix(text, max(map(len, text), default=0), left=False)
    changed = np.full((n, some.shape[1]), 32, dtype=some.dtype)
    changed[rows] = some
    cols.append(changed)
    return cols


def write_plain(out: TextIO, view: WatchView, unit: str = "human") -> None:
    """The plain-text frame (--once, or not a terminal): write_table's layout of every column but
    MAPPING, which follows the widest line; written as matrices (render.table.write_columns)."""
    out.write(view.header() + "\n")
    for s in view.status:
        out.write(f"! {printable(s)}\n")
    t = view.totals()
    foot = ["total", ""]
    for k in STATS:
        foot += [fmt_bytes(t[k] * PAGE_SIZE, unit) if k not in view.unknown else "?", ""]
    foot.append("")
    head = HEAD[:-1]
    # MAPPING two spaces after the widest line: every line is as wide as the header's, whose
    # last cell (CHANGED, right-aligned) ends at the edge, so it follows the padded columns.
    write_columns(out, HEAD, [*_plain_columns(view, unit, head, foot), view.cols.name], left=2,
                  footer=[[*foot, ""]], text_last=True, last_sep="  ")
    legend = ", ".join(f"{KIND_SHORT[k]} {KIND_TITLES[k]}" for k in KINDS)
    out.write(f"CHANGED since the last sample: {legend}\n")


def rich_view(view: WatchView, unit: str = "human", height: int | None = None) -> Any:
    """A rich renderable of the view: the table, changed rows highlighted by their main change."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text(view.header(), style="bold")
    lines: list[Any] = [title]
    for s in view.status:
        lines.append(Text(printable(s), style="bold red"))
    table = Table(box=None, pad_edge=False, header_style="bold reverse")
    for i, h in enumerate(HEAD):
        table.add_column(h, justify="left" if i in (0, 1, 10, 11) else "right", no_wrap=True,
                         min_width=25 if i == 0 else None, max_width=48 if h == "MAPPING" else None,
                         overflow="ellipsis" if h == "MAPPING" else "fold")
    rows = view.rows if height is None else view.head(max(height - 6, 1))
    for r in rows:
        cells = _cells(r, unit, view.unknown)
        style = None
        if r.changes:
            main = max(r.changes, key=lambda k: r.changes[k])
            style = KIND_STYLE[main]
        changed = Text()
        for k, n in r.changes.items():
            changed.append(f"{KIND_SHORT[k]}{fmt_bytes(n * PAGE_SIZE, unit)} ", style=KIND_STYLE[k])
        # Text, not str: rich would read "[...]" in a path as markup (and fail on "[/]").
        table.add_row(*(Text(c) for c in cells[:10]), changed, Text(cells[11]), style=style)
    lines.append(table)
    if len(rows) < len(view):
        lines.append(Text(f"... {len(view) - len(rows)} more VMAs (s: sort)", style="dim"))
    lines.append(Text("q quit  s sort  p pause   " + "  ".join(f"{KIND_SHORT[k]}={KIND_TITLES[k]}" for k in KINDS),
                      style="dim"))
    return Group(*lines)
