"""Maximal runs of consecutive pages in one state: the RFC's INDEX COUNT FLAGS MAPCOUNT rows. Pure."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb
from ..numeric import run_bounds
from .pages import Pages
from .state import MC_KEY_MAX, RFC_MASK, U64, Known


@dataclass
class Ranges:
    """Maximal runs of consecutive pages in one state: one row per range (columns)."""

    vpn: np.ndarray  # first virtual page
    count: np.ndarray
    state: np.ndarray  # state word (grouping mask applied)
    mapcount: np.ndarray  # -1 unknown
    pfn: np.ndarray | None  # first PFN, only when asked for
    cgroup: np.ndarray | None = None  # memcg inode (kpagecgroup) of the range, only when asked for

    def __len__(self) -> int:
        return len(self.vpn)

    def take(self, sel: slice | np.ndarray) -> Ranges:
        return Ranges(self.vpn[sel], self.count[sel], self.state[sel], self.mapcount[sel],
                      None if self.pfn is None else self.pfn[sel], None if self.cgroup is None else self.cgroup[sel])

    @staticmethod
    def concat(a: Ranges, b: Ranges) -> Ranges:
        def c(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
            return None if x is None or y is None else np.concatenate((x, y))

        return Ranges(np.concatenate((a.vpn, b.vpn)), np.concatenate((a.count, b.count)),
                      np.concatenate((a.state, b.state)), np.concatenate((a.mapcount, b.mapcount)),
                      c(a.pfn, b.pfn), c(a.cgroup, b.cgroup))


def ranges_of(pages: Pages, known: Known, *, full: bool, with_pfn: bool, swap: bool) -> Ranges:
    """Run-length encode pages (all in one VMA, address order) into maximal ranges.

    A range breaks where pages stop being virtually consecutive, where the grouped state or
    the map count changes, and, with PFNs, where pages stop being physically contiguous.
    """
    return _ranges(pages, None, known, full=full, with_pfn=with_pfn, swap=swap)[0]


def ranges_by_group(pages: Pages, group: np.ndarray, known: Known, *, full: bool, with_pfn: bool,
                    swap: bool) -> Iterator[tuple[int, Ranges]]:
    """ranges_of for the pages of many VMAs at once (group: the VMA index of each page, sorted),
    in one numpy pass: a process of 65,000 small VMAs costs a few passes, not 65,000."""
    r, g = _ranges(pages, group, known, full=full, with_pfn=with_pfn, swap=swap)
    if not len(r):
        return
    assert g is not None
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    lo = np.concatenate(([0], cuts)).tolist()
    hi = np.concatenate((cuts, [len(r)])).tolist()
    for a, b, i in zip(lo, hi, g[lo].tolist()):
        yield i, Ranges(r.vpn[a:b], r.count[a:b], r.state[a:b], r.mapcount[a:b],
                        None if r.pfn is None else r.pfn[a:b], None if r.cgroup is None else r.cgroup[a:b])


def batch_ranges(groups: Iterable[tuple[Pages, np.ndarray]], known: Callable[[], Known], *, full: bool,
                 with_pfn: bool, swap: bool) -> Iterator[tuple[int, Ranges, np.ndarray]]:
    """Maximal ranges of a stream of (pages, VMA index per page) batches, a batch at a time:
    (upto, ranges, VMA index of each range). Every VMA before `upto` is complete; the last range
    seen is held back until the next batch (it may continue there), so memory stays one batch.
    The per-VMA cost is a few array elements, not a Python object: 65,000 small VMAs are a few
    numpy passes."""
    held: Ranges | None = None
    held_g: np.ndarray | None = None
    for pages, group in groups:
        r, g = _ranges(pages, group, known(), full=full, with_pfn=with_pfn, swap=swap)
        if not len(r):
            continue
        assert g is not None
        if held is not None and held_g is not None:
            if held_g[0] == g[0]:  # the same VMA: the held range may continue into this batch
                before = len(r)
                held, r = merge_boundary(held, r)
                g = g[before - len(r):]
            r, g = Ranges.concat(held, r), np.concatenate((held_g, g))
        n = len(r)
        yield int(g[-1]), r.take(slice(0, n - 1)), g[: n - 1]
        held, held_g = r.take(slice(n - 1, n)), g[n - 1 :]
    if held is not None and held_g is not None:
        yield int(held_g[0]) + 1, held, held_g


def _ranges(pages: Pages, group: np.ndarray | None, known: Known, *, full: bool, with_pfn: bool,
            swap: bool) -> tuple[Ranges, np.ndarray | None]:
    # Resident pages, and with `swap` swap ptes; never the markers that carry bit 62 (pagemap.not_swap).
    pres = pmb.present(pages.pm)
    if swap:
        pres |= pmb.swapped(pages.pm)
    if not pres.all():
        pages = pages.take(pres)
        group = None if group is None else group[pres]
    n = len(pages)
    state = pages.state(known)
    if not full:
        state &= RFC_MASK
    mc = pages.mapcount(known)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return Ranges(pages.vpn, z, state, z, z.astype(U64) if with_pfn else None), group
    # One compare for state and map count: the state word leaves bits 40-63 free.
    key = state | (np.minimum(mc.astype(U64), U64(MC_KEY_MAX)) << U64(40))
    brk = (pages.vpn[1:] != pages.vpn[:-1] + U64(1)) | (key[1:] != key[:-1])
    pfn = pages.pfn if with_pfn and known.pfn else None  # hidden PFNs read 0: no contiguity
    if pfn is not None:
        brk |= pfn[1:] != pfn[:-1] + U64(1)
    if group is not None:
        brk |= group[1:] != group[:-1]
    cg = pages.kcgroup
    if cg is not None:  # ranges also break where the memory cgroup charged changes (pmaps PID --cgroup)
        brk |= cg[1:] != cg[:-1]
    first, count = run_bounds(brk)
    return (Ranges(pages.vpn[first], count, state[first], mc[first], None if pfn is None else pfn[first],
                   None if cg is None else cg[first]),
            None if group is None else group[first])


def merge_boundary(a: Ranges, b: Ranges) -> tuple[Ranges, Ranges]:
    """Join a's last range with b's first when they are one range split by chunking."""
    if len(a) == 0 or len(b) == 0:
        return a, b
    la = len(a) - 1
    ok = (
        int(a.vpn[la]) + int(a.count[la]) == int(b.vpn[0])
        and a.state[la] == b.state[0]
        and a.mapcount[la] == b.mapcount[0]
        and (a.pfn is None or b.pfn is None or int(a.pfn[la]) + int(a.count[la]) == int(b.pfn[0]))
        and (a.cgroup is None or b.cgroup is None or a.cgroup[la] == b.cgroup[0])
    )
    if not ok:
        return a, b
    a.count = a.count.copy()
    a.count[la] += b.count[0]
    sl = slice(1, None)
    return a, Ranges(b.vpn[sl], b.count[sl], b.state[sl], b.mapcount[sl], None if b.pfn is None else b.pfn[sl],
                     None if b.cgroup is None else b.cgroup[sl])


def merged_ranges(chunks: Iterable[Ranges]) -> Iterator[Ranges]:
    """Ranges of one VMA computed chunk by chunk, with chunk-boundary splits undone."""
    pending: Ranges | None = None
    for r in chunks:
        if pending is None:
            pending = r
            continue
        pending, r = merge_boundary(pending, r)
        if len(r) == 0:
            continue
        yield pending
        pending = r
    if pending is not None and len(pending):
        yield pending


