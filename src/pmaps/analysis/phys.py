"""The physical view (page-types without -p): kpageflags of a PFN range grouped by flag set, runs
of equal flags, and page-types' -b/--bits filter. Pure: numpy over u64 arrays.
Parsers raise ValueError on a bad expression (the command turns it into a usage error).

Names and letters follow tools/mm/page-types.c (page_flag_names); bits 0-26 are the ABI
(include/uapi/linux/kernel-page-flags.h); 32-41 are kernel-internal ("raw", --raw only).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..kernel.kpage import KPF_ABI_MASK, KPF_TABLE

U64 = np.uint64
# (bit, page-types long name, letter): the kpageflags table with page-types' names.
PT_FLAGS: tuple[tuple[int, str, str], ...] = tuple((b, pt, ch) for b, _, ch, pt in KPF_TABLE)
ABI_BITS = tuple(f for f in PT_FLAGS if f[0] < 32)
ALL_BITS = (1 << 64) - 1  # page-types' KPF_ALL_BITS
COMPOUND = (1 << 15) | (1 << 16)  # page-types' BITS_COMPOUND
MAX_PFN = 1 << 52  # 64-bit physical addresses / 4 KiB pages; kpageflags offsets (PFN * 8) fit in off_t


def _flag_name(word: str, raw: bool = False) -> int:
    """page-types parse_flag_name(): "compound", a prefix of a flag name (first in bit order), or a number."""
    if not word:
        return 0
    if len(word) <= 8 and "compound".startswith(word):
        return COMPOUND
    for bit, name, _ in PT_FLAGS:  # page-types searches every name, raw ones too
        if name.startswith(word):
            return 1 << bit
    try:
        v = int(word, 0)
    except ValueError:
        raise ValueError(f"invalid flag name or number: {word!r}") from None
    if not 0 <= v < 1 << 64:
        raise ValueError(f"flag number out of range (64 bits): {word!r}")
    return v


def _flag_names(text: str, negated: bool, raw: bool) -> int:
    """page-types parse_flag_names(): OR of comma-separated names; '~name' only when `negated`."""
    out = 0
    for word in text.split(","):
        if word.startswith("~"):
            if negated:
                out |= _flag_name(word[1:], raw)
        else:
            out |= _flag_name(word, raw)
    return out


@dataclass(frozen=True)
class BitsFilter:
    """One -b expression: a page passes when (flags & mask) == bits, or with bits == ALL when
    (flags & mask) != 0 (page-types bit_mask_ok())."""

    mask: int
    bits: int

    def test(self, flags: np.ndarray) -> np.ndarray:
        m = flags & U64(self.mask)
        return m != 0 if self.bits == ALL_BITS else m == U64(self.bits)


def parse_bits(expr: str, raw: bool = False) -> BitsFilter:
    """page-types parse_bits_mask(); its help text:
         bit1,bit2          (flags & (bit1|bit2)) != 0
         bit1,bit2=bit1     (flags & (bit1|bit2)) == bit1
         bit1,~bit2         (flags & (bit1|bit2)) == bit1
         =bit1,bit2         flags == (bit1|bit2)
    """
    if expr.startswith("="):
        return BitsFilter(ALL_BITS, _flag_names(expr[1:], False, raw))
    if "=" in expr:
        left, _, right = expr.partition("=")
        return BitsFilter(_flag_names(left, False, raw), _flag_names(right, False, raw))
    if "~" in expr:
        return BitsFilter(_flag_names(expr, True, raw), _flag_names(expr, False, raw))
    return BitsFilter(_flag_names(expr, False, raw), ALL_BITS)


def select(flags: np.ndarray, filters: Iterable[BitsFilter]) -> np.ndarray | None:
    """Pages passing every filter (several -b options AND together); None: no filter."""
    sel = None
    for f in filters:
        t = f.test(flags)
        sel = t if sel is None else sel & t
    return sel


def symbolic(flags: int, raw: bool = False) -> str:
    """page-types' symbolic string: a letter per set bit, '_' per clear one."""
    return "".join(ch if flags >> b & 1 else "_" for b, _, ch in (PT_FLAGS if raw else ABI_BITS))


def names(flags: int, raw: bool = False) -> list[str]:
    return [n for b, n, _ in (PT_FLAGS if raw else ABI_BITS) if flags >> b & 1]


@dataclass
class PhysSummary:
    """Pages per flag set, and (optionally) maximal runs of PFNs with equal flags."""

    groups: dict[int, int] = field(default_factory=dict)  # flags -> pages
    scanned: int = 0  # PFNs read
    excluded: int = 0  # pmaps' own private pages left out
    run_start: list[np.ndarray] = field(default_factory=list)
    run_len: list[np.ndarray] = field(default_factory=list)
    run_flags: list[np.ndarray] = field(default_factory=list)

    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.run_start:
            z = np.zeros(0, dtype=np.int64)
            return z, z, z.astype(U64)
        return np.concatenate(self.run_start), np.concatenate(self.run_len), np.concatenate(self.run_flags)


HUGE = 1 << 17


def well_known(flags: np.ndarray) -> np.ndarray:
    """page-types' default view of kpageflags (tools/mm/page-types.c well_known_flags()): the
    kernel-internal bits 32+ hidden, and COMPOUND_HEAD/TAIL hidden on pages that are not hugetlb,
    so a THP or a large folio groups with its order-0 peers. `--raw` keeps every bit."""
    f = flags & KPF_ABI_MASK
    plain = (f & U64(COMPOUND)) != 0
    plain &= (f & U64(HUGE)) == 0
    return np.where(plain, f & ~U64(COMPOUND), f)


def summarize(chunks: Iterable[tuple[int, np.ndarray]], filters: list[BitsFilter], raw: bool = False,
              ranges: bool = False, exclude: np.ndarray | None = None) -> PhysSummary:
    """Group (first PFN, kpageflags) chunks by flags: np.unique per chunk, runs by np.diff. PFNs in
    `exclude` (sorted; pmaps' own private pages) are left out of groups and runs."""
    out = PhysSummary()
    for start, flags in chunks:
        out.scanned += len(flags)
        f = flags if raw else well_known(flags)
        sel = select(f, filters)
        if exclude is not None and len(exclude):
            lo, hi = np.searchsorted(exclude, [start, start + len(f)])
            if hi > lo:
                keep = np.ones(len(f), dtype=bool) if sel is None else sel
                keep[(exclude[lo:hi] - start).astype(np.int64)] = False
                sel = keep
                out.excluded += int(hi - lo)
        idx = np.arange(len(f), dtype=np.int64) if sel is None else np.flatnonzero(sel)
        fs = f if sel is None else f[idx]
        vals, counts = np.unique(fs, return_counts=True)
        for v, c in zip(vals.tolist(), counts.tolist()):
            out.groups[v] = out.groups.get(v, 0) + c
        if ranges and len(idx):
            brk = np.flatnonzero((np.diff(idx) != 1) | (fs[1:] != fs[:-1])) + 1
            first = np.concatenate(([0], brk))
            lens = np.diff(np.concatenate((first, [len(idx)])))
            _append_runs(out, idx[first] + start, lens, fs[first])
    return out


def _append_runs(out: PhysSummary, starts: np.ndarray, lens: np.ndarray, flags: np.ndarray) -> None:
    """Add runs, joining the first with the previous chunk's last when they continue each other."""
    if out.run_start:
        ps, pl, pf = out.run_start[-1], out.run_len[-1], out.run_flags[-1]
        if int(ps[-1]) + int(pl[-1]) == int(starts[0]) and pf[-1] == flags[0]:
            pl = pl.copy()
            pl[-1] += lens[0]
            out.run_len[-1] = pl
            starts, lens, flags = starts[1:], lens[1:], flags[1:]
    if len(starts):
        out.run_start.append(starts)
        out.run_len.append(lens)
        out.run_flags.append(flags)


def parse_pfn_range(text: str) -> tuple[int, int | None]:
    """'A-B' (B exclusive), 'A-' (to the end) or 'A' (one page); hex (0x...) or decimal."""
    try:
        a, sep, b = text.partition("-")
        lo = int(a, 0)
        hi = (int(b, 0) if b else None) if sep else lo + 1
    except ValueError:
        raise ValueError(f"bad PFN range {text!r} (want A-B, e.g. 0x100000-0x200000)") from None
    if lo < 0 or (hi is not None and hi <= lo) or lo >= MAX_PFN:
        raise ValueError(f"bad PFN range {text!r}")
    return lo, None if hi is None else min(hi, MAX_PFN)
