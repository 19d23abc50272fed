"""`pmaps heatmap`: a recording as a picture, address (holes squeezed) x time, coloured by state.

The address axis keeps only pages that were populated in some sample (the union over the
recording), so unpopulated holes and reservations take no width; VMA edges are marked. Pages are
aggregated into pixel columns with numpy (cumulative counts per state class), and each cell's
colour is the mix of its classes weighted by their page counts: a 16 GiB process fits in a
picture. matplotlib (the `plot` extra) is imported inside the functions.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ..analysis.diff import dirty
from ..kernel.kpage import KPF
from ..model import Sample
from ..model.state import S_PRESENT, S_SWAPPED
from ..numeric import merge_intervals
from .table import printable

U64 = np.uint64
CLASSES = ("absent", "present", "dirty", "swapped", "thp")
COLORS = np.array([[0.93, 0.93, 0.93], [0.55, 0.75, 0.95], [0.95, 0.55, 0.15], [0.6, 0.2, 0.7],
                   [0.15, 0.6, 0.25]])


def page_class(state: np.ndarray) -> np.ndarray:
    """Class index per range: swapped, THP, dirty, present (first that applies)."""
    b = lambda n: ((state >> U64(n)) & U64(1)).astype(bool)
    cls = np.zeros(len(state), dtype=np.int64)
    cls[b(S_PRESENT)] = 1
    cls[dirty(state)] = 2
    cls[b(S_PRESENT) & b(KPF["thp"])] = 4
    cls[b(S_SWAPPED)] = 3
    return cls


@dataclass
class Heat:
    image: np.ndarray  # (samples, width, 3) RGB in 0..1
    times: np.ndarray  # seconds since the first sample
    vma_edges: list[tuple[float, str]]  # x position (pixel) and label of each VMA's start
    pages_per_px: float
    total_pages: int


def _union(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted disjoint [start, end) page intervals populated in any sample."""
    s = np.concatenate([x.vpn for x in samples]).astype(np.int64)
    e = np.concatenate([x.end for x in samples]).astype(np.int64)
    o = np.argsort(s, kind="stable")
    us, ue, _ = merge_intervals(s[o], e[o])
    return us, ue


def build(samples: list[Sample], width: int = 1200) -> Heat:
    us, ue = _union(samples)
    if not len(us):
        raise ValueError("the recording holds no populated pages: nothing to draw")
    ulen = ue - us
    ucum = np.concatenate(([0], np.cumsum(ulen)))
    total = int(ucum[-1])
    width = max(1, min(width, total))
    px_edges = np.linspace(0, total, width + 1)
    img = np.zeros((len(samples), width, 3))
    for row, smp in enumerate(samples):
        # Squeezed coordinate of each range start (ranges lie inside union intervals).
        ki = np.searchsorted(us, smp.vpn.astype(np.int64), side="right") - 1
        c0 = ucum[ki] + (smp.vpn.astype(np.int64) - us[ki])
        cls = page_class(smp.state)
        frac = np.zeros((len(CLASSES), width))
        for ci in range(1, len(CLASSES)):
            m = cls == ci
            if not m.any():
                continue
            cs, cn = c0[m], smp.count[m]
            order = np.argsort(cs)
            cs, cn = cs[order], cn[order]
            cum = np.concatenate(([0], np.cumsum(cn)))

            def F(x: np.ndarray, cs: np.ndarray = cs, cn: np.ndarray = cn, cum: np.ndarray = cum) -> np.ndarray:
                # pages of this class with coordinate < x
                i = np.searchsorted(cs, x, side="left")  # ranges starting before x: 0..i-1
                j = np.maximum(i - 1, 0)
                part = np.where(i > 0, np.minimum(cn[j], np.maximum(x - cs[j], 0)), 0)
                return cum[j] + part

            fx = F(px_edges)
            frac[ci] = np.diff(fx)
        span = np.diff(px_edges)
        frac[0] = np.maximum(span - frac[1:].sum(axis=0), 0)
        frac /= span
        img[row] = frac.T @ COLORS
    t0 = samples[0].time
    edges = []
    for v in samples[-1].vmas:
        k = int(np.searchsorted(us, v.start >> 12, side="left"))
        if k < len(us) and us[k] < (v.end >> 12):
            x = (ucum[k] + max(0, (v.start >> 12) - int(us[k]))) / total * width
            edges.append((float(x), v.path or f"{v.start:x}"))
    return Heat(img, np.array([s.time - t0 for s in samples]), edges, total / width, total)


def render(heat: Heat, fmt: str, title: str) -> bytes:
    """The picture as bytes: "png", "svg", or "html" (the PNG embedded, the title escaped)."""
    import html

    from .charts import figure_bytes, need_pyplot

    plt = need_pyplot("heatmaps")
    from matplotlib.patches import Patch
    n, w, _ = heat.image.shape
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=100)
    try:
        tmax = heat.times[-1] if n > 1 else 1.0
        ax.imshow(heat.image, aspect="auto", interpolation="nearest", origin="upper",
                  extent=(0, w, tmax + (tmax / max(n - 1, 1) if n > 1 else 0), 0))
        for x, _ in heat.vma_edges:
            ax.axvline(x, color="black", lw=0.3, alpha=0.5)
        # Label the widest VMAs only: labels of narrow ones would overlap.
        spans = [(heat.vma_edges[i + 1][0] if i + 1 < len(heat.vma_edges) else w) - x
                 for i, (x, _) in enumerate(heat.vma_edges)]
        for i in sorted(range(len(spans)), key=lambda i: -spans[i])[:12]:
            x, label = heat.vma_edges[i]
            if spans[i] > w / 40:
                ax.text(x + 1, 0, printable(label.rsplit("/", 1)[-1][:24]), fontsize=7, rotation=90, va="top",
                        ha="left", color="black", alpha=0.8)
        mib = heat.total_pages * 4096 / (1 << 20)
        ax.set_xlabel(f"populated address space, holes squeezed ({mib:,.0f} MiB; {heat.pages_per_px:,.1f} pages per "
                      f"column; lines: VMA starts)")
        ax.set_ylabel("seconds since the first sample")
        ax.set_xticks([])
        ax.set_title(printable(title))
        ax.legend(handles=[Patch(color=COLORS[i], label=c) for i, c in enumerate(CLASSES)], loc="upper center",
                  bbox_to_anchor=(0.5, -0.08), ncol=len(CLASSES), frameon=False)
        fig.tight_layout()
        if fmt != "html":
            return figure_bytes(fig, fmt)
        b64 = base64.b64encode(figure_bytes(fig, "png")).decode()
        t = html.escape(printable(title))
        return (f"<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1>"
                f"<img alt='pmaps heatmap' src='data:image/png;base64,{b64}'>\n").encode()
    finally:
        plt.close(fig)
