"""The folio of every present page: kpageflags of the aligned PMD-size blocks around compound pages.

A collector, not an analysis: it reads /proc/kpageflags (through kernel.kpage) beyond the pages the
process maps, since a folio's head or tails may be mapped elsewhere or nowhere."""
from __future__ import annotations

import numpy as np

from ..kernel.kpage import KPF, PfnReader
from ..model import Pages

U64 = np.uint64
BLOCK = 512
COMPOUND = U64((1 << KPF["compound_head"]) | (1 << KPF["compound_tail"]))


def read_folio_blocks(pages: Pages) -> tuple[np.ndarray, np.ndarray]:
    """(sorted block start PFNs, kpageflags of each block as (nblocks, 512)) for the blocks holding
    a compound page of `pages` (which need kflags and real PFNs)."""
    pres = pages.present
    kf = pages.kflags if pages.kflags is not None else np.zeros(len(pages), dtype=U64)
    comp = pres & ((kf & COMPOUND) != 0)
    starts = np.unique(pages.pfn[comp] >> U64(9)) << U64(9)
    if not len(starts):
        return starts, np.zeros((0, BLOCK), dtype=U64)
    pfns = (starts[:, None] + np.arange(BLOCK, dtype=U64)[None, :]).reshape(-1)
    with PfnReader(want_flags=True, want_count=False) as r:
        flags, _ = r.lookup(pfns)
    if flags is None:
        flags = np.zeros(len(pfns), dtype=U64)
    return starts, flags.reshape(-1, BLOCK)
