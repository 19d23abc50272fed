"""--pie / --bar FILE.png charts (smem's), drawn with matplotlib's Agg backend (the `plot` extra).

matplotlib is imported here, inside the function: every pmaps start imports the command modules,
and a 0.5 s import must not be paid by commands that draw nothing.
"""
from __future__ import annotations

import io
import logging
from typing import Any

from ..errors import PmapsError, Unsupported
from .units import fmt_bytes

MAX_SLICES = 12  # the largest N-1 items, then "other"


def top_items(items: list[tuple[str, int]], limit: int = MAX_SLICES) -> list[tuple[str, int]]:
    """Largest first; the tail folded into one "other" item; zero and unknown sizes dropped."""
    items = sorted(((k, v) for k, v in items if v), key=lambda kv: -kv[1])
    if len(items) <= limit:
        return items
    head, tail = items[: limit - 1], items[limit - 1 :]
    return head + [(f"other ({len(tail)})", sum(v for _, v in tail))]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, None without matplotlib.

    matplotlib logs multi-line warnings on stderr when its config directory is not writable
    (e.g. a user with root's HOME under setpriv/sudo); pmaps keeps stderr to its own lines.
    """
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig: Any, path: str, fmt: str, mode: int = 0o644, **kw: Any) -> None:
    """Render the figure in memory, then write it atomically: never a half-written picture."""
    from ..store import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kw)
    try:
        write_atomic(path, buf.getvalue(), mode)
    except OSError as err:
        raise PmapsError(f"cannot write {path}: {err.strerror or err}", path=path) from err


def draw(path: str, kind: str, items: list[tuple[str, int]], title: str) -> int:
    """Write a pie or horizontal bar chart of (label, bytes) to a PNG; returns the number of labels."""
    plt = pyplot()
    if plt is None:
        raise Unsupported("charts need matplotlib: pip install 'pmaps[plot]'")
    items = top_items(items)
    labels = [f"{k} ({fmt_bytes(v)})" for k, v in items]
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
        ax.set_title(title)
        fig.tight_layout()
        save_figure(fig, path, "png", dpi=100)
    finally:
        plt.close(fig)
    return len(items)
