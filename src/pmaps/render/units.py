"""One family of number formatters for every human-facing output."""
from __future__ import annotations

import functools

UNITS = {"human": 0, "bytes": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


# Cached: a table of 65,000 VMAs formats half a million cells, most of them the same few sizes.
@functools.lru_cache(maxsize=8192)
def fmt_bytes(n: int | None, unit: str = "human") -> str:
    """Bytes as text: '?' unknown; human ('1.5G', '12K', '0'); KiB as a whole number (pages are
    whole KiB); MiB and GiB with one decimal, and never rounded to zero: 48 MiB in GiB is 0.047."""
    if n is None:
        return "?"
    if unit == "bytes":
        return str(n)
    if unit == "k":
        return str(round(n / UNITS[unit]))
    if unit != "human":
        v = n / UNITS[unit]
        text = f"{v:.1f}"
        return f"{v:.2g}" if n and float(text) == 0 else text
    if n < 0:  # a difference (top's reconciliation): the sign, then the size
        return "-" + fmt_bytes(-n, unit)
    if n < 1024:
        return str(n) if n else "0"
    for suffix, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.1f}{suffix}" if v < 10 else f"{v:.0f}{suffix}"
    return str(n)


def unit_header(unit: str) -> str:
    return {"human": "", "bytes": " (B)", "k": " (KiB)", "m": " (MiB)", "g": " (GiB)"}[unit]
