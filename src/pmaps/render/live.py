"""`pmaps watch` view-model and its two writers: a plain aligned table and a rich renderable.

The view is built from the current sample, the previous one and their diff; rich is imported
only by `rich_view`, inside the function.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..analysis.diff import KIND_TITLES, KINDS, Diff
from ..analysis.footprint import Facts, figures
from ..kernel.maps import PAGE_SIZE
from ..model import Sample
from .table import printable, write_table
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


def vma_stats(s: Sample) -> tuple[dict[tuple[int, int], tuple[int, ...]], frozenset[str]]:
    """Pages per VMA (keyed by start, end): (resident, swapped, dirty, thp), in STATS order; and the
    columns these samples cannot tell. Tuples, not dicts: a process may have 65,000 VMAs."""
    figs = figures(Facts.of_sample(s), tuple(FIGURE_OF.values()))
    sums = figs.by_group(s.vma, len(s.vmas))
    unknown = frozenset(k for k, f in FIGURE_OF.items() if f in figs.unknown)
    cols = [sums[FIGURE_OF[k]].tolist() for k in STATS]
    return dict(zip(((v.start, v.end) for v in s.vmas), zip(*cols))), unknown


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
class WatchView:
    pid: int
    comm: str
    seq: int
    rows: list[Row]
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
        now, unknown = vma_stats(cur)
        before = vma_stats(prev)[0] if prev is not None else {}
        ch: dict[tuple[int, int], dict[str, int]] = {}
        for vd in diff.vmas if diff else []:
            d = ch.setdefault((vd.vma.start, vd.vma.end), {})
            for k, n in vd.totals().items():
                d[k] = d.get(k, 0) + n
        rows = []
        none: dict[str, int | None] = dict.fromkeys(STATS)
        for v in cur.vmas:
            key = (v.start, v.end)
            st, old = now[key], before.get(key)
            if not all_vmas and not any(st) and key not in ch:
                continue
            delta: dict[str, int | None] = none if old is None else dict(zip(STATS, (a - b for a, b in zip(st, old))))
            rows.append(Row(v.start, v.end, v.perms, v.path, dict(zip(STATS, st)), delta, ch.get(key, {})))
        view = cls(cur.pid, cur.comm, cur.seq, rows, cost_ms, cpu_pct, interval, fields, list(status or []), sort,
                   unknown)
        view.sort_rows()
        return view

    def sort_rows(self) -> None:
        if self.sort == "resident":
            self.rows.sort(key=lambda r: (-r.now["resident"], r.start))
        elif self.sort == "change":
            self.rows.sort(key=lambda r: (-r.changed, r.start))
        else:
            self.rows.sort(key=lambda r: r.start)

    def header(self) -> str:
        return (f"pmaps watch {self.pid} ({printable(self.comm)})  sample {self.seq}  every {self.interval:g}s  "
                f"fields {self.fields}  cost {self.cost_ms:.1f} ms/sample, {self.cpu_pct:.1f}% of a core  "
                f"sort {self.sort}")

    def totals(self) -> dict[str, int]:
        return {k: sum(r.now[k] for r in self.rows) for k in STATS}


def _delta(d: int | None, unit: str) -> str:
    if not d:
        return ""
    return ("+" if d > 0 else "-") + fmt_bytes(abs(d) * PAGE_SIZE, unit)


def _cells(r: Row, unit: str, unknown: frozenset[str]) -> list[str]:
    cells = [f"{r.start:x}-{r.end:x}", r.perms]
    for k in STATS:
        if k in unknown:
            cells += ["?", ""]
            continue
        cells += [fmt_bytes(r.now[k] * PAGE_SIZE, unit), _delta(r.delta[k], unit)]
    cells.append(" ".join(f"{KIND_SHORT[k]}{fmt_bytes(n * PAGE_SIZE, unit)}" for k, n in r.changes.items()))
    cells.append(printable(r.name))
    return cells


HEAD = ["ADDRESS", "PERMS", "RSS", "ΔRSS", "SWAP", "ΔSWAP", "DIRTY", "ΔDIRTY", "THP", "ΔTHP", "CHANGED", "MAPPING"]


def write_plain(out: TextIO, view: WatchView, unit: str = "human") -> None:
    """The plain-text frame (--once, or not a terminal)."""
    out.write(view.header() + "\n")
    for s in view.status:
        out.write(f"! {printable(s)}\n")
    rows = [_cells(r, unit, view.unknown) for r in view.rows]
    t = view.totals()
    foot = ["total", ""]
    for k in STATS:
        foot += [fmt_bytes(t[k] * PAGE_SIZE, unit) if k not in view.unknown else "?", ""]
    # MAPPING is appended after the aligned columns: write_table right-aligns a last column.
    buf = io.StringIO()
    write_table(buf, HEAD[:-1], [c[:-1] for c in rows], left=2, footer=[[*foot, ""]])
    names = [HEAD[-1], *(c[-1] for c in rows), ""]
    lines = buf.getvalue().splitlines()
    width = max(len(ln) for ln in lines)
    for ln, name in zip(lines, names):
        out.write((ln.ljust(width) + "  " + name).rstrip() + "\n")
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
    rows = view.rows if height is None else view.rows[: max(height - 6, 1)]
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
    if len(rows) < len(view.rows):
        lines.append(Text(f"... {len(view.rows) - len(rows)} more VMAs (s: sort)", style="dim"))
    lines.append(Text("q quit  s sort  p pause   " + "  ".join(f"{KIND_SHORT[k]}={KIND_TITLES[k]}" for k in KINDS),
                      style="dim"))
    return Group(*lines)
