"""--pie / --bar FILE.png charts (smem's), drawn with matplotlib's Agg backend (the `plot` extra).

matplotlib is imported here, inside the function: a 0.5 s import must not be paid by commands
that draw nothing. Renderers return the picture's bytes; the command writes the file (store/).
"""
from __future__ import annotations

import io
from typing import Any

from ..errors import MissingExtra
from .table import printable
from .units import fmt_bytes

MAX_SLICES = 12  # the largest N-1 items, then "other"


def top_items(items: list[tuple[str, int]], limit: int = MAX_SLICES) -> list[tuple[str, int]]:
    """Largest first; the tail folded into one "other" item; zero and unknown sizes dropped."""
    items = sorted(((k, v) for k, v in items if v), key=lambda kv: -kv[1])
    if len(items) <= limit:
        return items
    head, tail = items[: limit - 1], items[limit - 1 :]
    return [*head, (f"other ({len(tail)})", sum(v for _, v in tail))]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, None without matplotlib.

    matplotlib logs multi-line warnings on stderr when its config directory is not writable
    (e.g. a user with root's HOME under setpriv/sudo); pmaps keeps stderr to its own lines.
    """
    import logging  # here: its import is a few ms that commands drawing nothing need not pay

    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        import matplotlib

        matplotlib.use("Agg")
        # Labels are process names and paths, anyone's text: a '$' must not start mathtext
        # (`$\\frac{$` raised in the parser), nor TeX run on them.
        matplotlib.rcParams["text.parse_math"] = False
        matplotlib.rcParams["text.usetex"] = False
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def figure_bytes(fig: Any, fmt: str, **kw: Any) -> bytes:
    """Render a figure in memory (the file is written whole by the caller: never half a picture)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kw)
    return buf.getvalue()


def need_pyplot(what: str) -> Any:
    plt = pyplot()
    if plt is None:
        raise MissingExtra(f"{what} need matplotlib: pip install 'pmaps[plot]'")
    return plt


def chart_png(kind: str, items: list[tuple[str, int]], title: str) -> bytes:
    """A pie or horizontal bar chart of (label, bytes) as PNG bytes."""
    plt = need_pyplot("charts")
    items = top_items(items)
    labels = [f"{printable(k)} ({fmt_bytes(v)})" for k, v in items]
    values = [v for _, v in items]
    fig, ax = plt.subplots(figsize=(9, 6) if kind == "pie" else (10, 0.45 * max(len(items), 4) + 1.5))
    try:
        if not items:
            ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
            ax.set_axis_off()
        elif kind == "pie":
            ax.pie(values, labels=labels, startangle=90, counterclock=False, wedgeprops={"linewidth": 0.5,
                                                                                       "edgecolor": "white"})
            ax.axis("equal")
        else:
            y = list(range(len(items)))[::-1]
            ax.barh(y, [v / (1 << 20) for v in values])
            ax.set_yticks(y, labels=labels)
            ax.set_xlabel("MiB")
        ax.set_title(printable(title))
        fig.tight_layout()
        return figure_bytes(fig, "png", dpi=100)
    finally:
        plt.close(fig)
