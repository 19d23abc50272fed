"""`pmaps explain` output: each well-known number, the kernel's value, pmaps' sum of its buckets."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..analysis.explain import BUCKETS, Explanation, Number
from .output import View
from .table import printable, write_table
from .units import fmt_bytes, unit_header

SCHEMA = "pmaps-explain/1"


def _value(ex: Explanation, part: str) -> int:
    if part.startswith("pss:"):
        return ex.pss[part[4:]]
    return ex.buckets.get(part, 0)


@dataclass
class ExplainView(View):
    ex: Explanation
    pss_without_pmaps: int | None = None
    schema: str = SCHEMA
    json_indent: int | None = 1

    def document(self) -> dict[str, Any]:
        ex = self.ex
        return {"schema": SCHEMA, "pid": ex.pid, "comm": ex.comm, "buckets": ex.buckets, "pss": ex.pss,
                "numbers": [{"name": n.name, "source": n.source, "kernel": n.kernel, "pmaps": n.pmaps,
                             "difference": n.difference, "buckets": list(n.buckets)} for n in ex.numbers],
                "pss_without_pmaps": self.pss_without_pmaps, "notes": ex.notes}

    def records(self) -> Iterable[dict[str, Any]]:
        for n in self.document()["numbers"]:
            yield {"schema": SCHEMA, "pid": self.ex.pid, **n}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return (["name", "kernel", "pmaps", "difference", "buckets", "source"],
                ([n.name, n.kernel, n.pmaps, n.difference, " ".join(n.buckets), n.source] for n in self.ex.numbers))

    def text(self, out: TextIO, unit: str) -> None:
        ex, h = self.ex, unit_header(unit)
        out.write(f"pmaps explain {ex.pid} ({printable(ex.comm)}): each number is the sum of the buckets pmaps "
                  "measured page by page\n")
        rows = []
        for n in ex.numbers:
            made = " + ".join(f"{p.replace('pss:', 'PSS of ')} {fmt_bytes(_value(ex, p), unit)}"
                              if p not in ("uss", "swap_pss") else p for p in n.buckets)
            rows.append([n.name, fmt_bytes(n.kernel, unit), fmt_bytes(n.pmaps, unit),
                         fmt_bytes(n.difference, unit) if n.difference is not None else "?", made, n.source])
        write_table(out, ["NUMBER", "KERNEL" + h, "PMAPS" + h, "DIFF" + h, "MADE OF", "WHERE"], rows, left=1,
                    lefts=[True, False, False, False, True, True])
        out.write("\nBUCKETS" + h + "  " + "  ".join(f"{b} {fmt_bytes(ex.buckets[b], unit)}" for b in BUCKETS) + "\n")
        if self.pss_without_pmaps is not None:
            out.write(f"# Pss when pmaps is not running: {fmt_bytes(self.pss_without_pmaps, unit)} (while it reads, "
                      "pmaps maps the same libraries: the kernel's Pss above is lower by its share)\n")
        for note in ex.notes:
            out.write(f"# {note}\n")


def chart_png(ex: Explanation, title: str) -> bytes:
    """Stacked bars: each number as its buckets, the kernel's value marked."""
    from .charts import figure_bytes, need_pyplot

    plt = need_pyplot("charts")
    nums = [n for n in ex.numbers if not set(n.buckets) & {"uss", "swap_pss"}]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(nums) + 1.8))
    try:
        colors = plt.get_cmap("tab10")
        labels: set[str] = set()
        for y, n in enumerate(reversed(nums)):
            left = 0.0
            for i, part in enumerate(n.buckets):
                v = _value(ex, part) / (1 << 20)
                name = part.replace("pss:", "")
                ax.barh(y, v, left=left, color=colors(BUCKETS.index(name) if name in BUCKETS else i),
                        label=None if name in labels else name)
                labels.add(name)
                left += v
            if n.kernel is not None:
                ax.plot([n.kernel / (1 << 20)] * 2, [y - 0.4, y + 0.4], color="black", lw=1.5)
        ax.set_yticks(range(len(nums)), labels=[n.name for n in reversed(nums)])
        ax.set_xlabel("MiB (black line: the kernel's number)")
        ax.set_title(printable(title).replace("$", r"\$"))
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        return figure_bytes(fig, "png", dpi=100)
    finally:
        plt.close(fig)


@dataclass
class SystemExplainView(View):
    """`pmaps explain --system`: meminfo against pages by kpageflags."""

    numbers: list[Number]
    buckets: dict[str, int]
    pmaps_private: int
    schema: str = "pmaps-explain-system/1"
    title: str = "the machine"
    json_indent: int | None = 1

    def document(self) -> dict[str, Any]:
        return {"schema": self.schema, "buckets": self.buckets, "pmaps_private": self.pmaps_private,
                "numbers": [{"name": n.name, "source": n.source, "kernel": n.kernel, "pmaps": n.pmaps,
                             "difference": n.difference, "buckets": list(n.buckets)} for n in self.numbers]}

    def records(self) -> Iterable[dict[str, Any]]:
        for n in self.document()["numbers"]:
            yield {"schema": self.schema, **n}

    def table(self) -> tuple[Sequence[str], Iterable[Sequence[object]]]:
        return (["name", "kernel", "pmaps", "difference", "buckets", "source"],
                ([n.name, n.kernel, n.pmaps, n.difference, " ".join(n.buckets), n.source] for n in self.numbers))

    def text(self, out: TextIO, unit: str) -> None:
        h = unit_header(unit)
        out.write(f"pmaps explain: {printable(self.title)}\n")
        rows = [[n.name, fmt_bytes(n.kernel, unit), fmt_bytes(n.pmaps, unit),
                 fmt_bytes(n.difference, unit) if n.difference is not None else "?",
                 n.source if self.schema.endswith("system/1") else " + ".join(n.buckets)] for n in self.numbers]
        write_table(out, ["NUMBER", "KERNEL" + h, "PMAPS" + h, "DIFF" + h, "WHAT PMAPS COUNTED"], rows, left=1,
                    lefts=[True, False, False, False, True])
        if not self.schema.endswith("system/1"):
            out.write("BUCKETS" + h + "  " + "  ".join(f"{k} {fmt_bytes(v, unit)}" for k, v in self.buckets.items())
                      + "\n# pages charged to the cgroup (own) and to the cgroups below it, by kpagecgroup; the "
                      "kernel's counters also hold per-CPU charge caches and swap cache\n")
            return
        out.write("# The counters are read in an instant, the page flags over about a second: pages that change "
                  "meanwhile, per-CPU free lists (MemFree) and\n# THP accounting make the differences; pmaps' own "
                  f"process holds {fmt_bytes(self.pmaps_private, unit)} of private pages during the read.\n")
