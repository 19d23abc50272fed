"""One sample of a process as ranges (recordings, diff, watch): from its pages, or for a pagemap-only
sample straight from PAGEMAP_SCAN's regions (never expanding pages)."""
from __future__ import annotations

import functools
import time

import numpy as np

from ..errors import PidReused, PmapsError, ProcessGone
from ..kernel import procfs
from ..kernel.kpage import KPF
from ..kernel.maps import PAGE_SHIFT, VmaTable
from ..kernel.pagemap import (
    CAT_FILE,
    CAT_GUARD,
    CAT_HUGE,
    CAT_PFNZERO,
    CAT_PRESENT,
    CAT_SWAPPED,
    CAT_WRITTEN,
    RETURN_MASK,
)
from ..model import Known, Ranges, Sample
from ..model.ranges import batch_ranges
from ..model.state import S_FILE, S_GUARD, S_PMD, S_PRESENT, S_SWAPPED, S_UFFD_WP
from ..numeric import arange_runs
from .parallel import background
from .process import Process

U64 = np.uint64


def take_sample(proc: Process, *, with_pfn: bool = False, seq: int = 0) -> Sample:
    """Read the process now into ranges (full state word, swapped pages included). PidReused
    when its PID came to name another process, before or during the sample. seq 0 is taken as
    the first sample of a Process just opened (see _take_sample): any other is as correct, and
    costs a second read of the pages when maps changed since the table was read and had not
    changed at the sample before."""
    try:
        return _take_sample(proc, with_pfn, seq)
    except ProcessGone as e:
        if not isinstance(e, PidReused):
            proc.check_identity()  # a read failed because the process exited: was its PID given on?
        raise


def _take_sample(proc: Process, with_pfn: bool, seq: int) -> Sample:
    t0 = time.perf_counter()
    # The same start time before and after: every read between was of this process, not of
    # one that was given its PID after it exited (checked even when only pagemap is read).
    proc.check_identity()
    if (seq == 0 or proc.maps_steady) and proc.table.source and _well_formed(proc.table):
        # The table is open()'s maps read (the first sample of a process just opened), or the
        # last sample's, and maps had not changed then. The read that must agree with it
        # (Process.refresh_table) is made while the pages are read with that table, on a helper
        # thread (~20 ms of kernel time for 65,000 VMAs). When it agrees, the sample stands, as
        # refresh_table would have kept the table; else the sample is taken again after
        # refresh_table, and the next one is not guessed (a process whose maps keep changing
        # would have its pages read twice a sample). (On one CPU it is read first: background.)
        reread = background(functools.partial(procfs.read_file, proc.pid, "maps", started=True))
        try:
            s = _read_sample(proc, with_pfn, seq, t0)
        finally:
            try:
                raw: bytes | None = reread()
            except PmapsError:  # gone: the refresh below says so
                raw = None
        if raw == proc.table.source and s.table is proc.table:
            proc.maps_steady = True
            return s
        old = None  # the guess was wrong: the next sample reads maps first
    else:
        old = proc.table
    proc.refresh_table()
    proc.maps_steady = proc.table is old  # refresh_table keeps the table when maps read the same
    return _read_sample(proc, with_pfn, seq, t0)


def _well_formed(table: VmaTable) -> bool:
    """VMAs in address order, none overlapping the next (Process.refresh_table's test)."""
    return bool((table.end[:-1] <= table.start[1:]).all())


def _read_sample(proc: Process, with_pfn: bool, seq: int, t0: float) -> Sample:
    """The sample of the pages of proc.table's VMAs."""
    if not (proc.opts.flags or proc.opts.counts) and proc.scanning and not with_pfn:
        s = _scan_sample(proc, seq, t0)
        proc.check_identity()
        return s
    # Batches of many VMAs, ranges merged across batch boundaries (batch_ranges): no per-VMA work.
    rs: list[Ranges] = []
    gs: list[np.ndarray] = []
    for _upto, r, g in batch_ranges(proc.groups(), lambda: proc.known, full=True, with_pfn=with_pfn, swap=True):
        if len(r):
            rs.append(r)
            gs.append(g)
    known = proc.known  # may have changed (PFNs found hidden mid-scan)
    return Sample.of_ranges(proc.pid, proc.comm, proc.table, known, list(zip(gs, rs)), with_pfn and known.pfn, seq,
                            time.time(), time.perf_counter() - t0)


def _scan_sample(proc: Process, seq: int, t0: float) -> Sample:
    """A pagemap-only sample straight from PAGEMAP_SCAN's regions, never expanding pages.

    The kernel already merges adjacent pages of equal categories into one region (present,
    swapped, file, PFN-zero): those are our ranges. What this leaves out, compared with reading
    pagemap entries: the exclusive bit (56), which PAGEMAP_SCAN does not report. uffd-wp is a
    populated page not PAGE_IS_WRITTEN; a guard marker is PAGE_IS_GUARD (6.15+), not swapped.
    """
    vm = proc.table
    vs, ve = vm.start, vm.end
    regs = proc.regions(int(vs[0]), int(ve[-1]), returns=RETURN_MASK | CAT_WRITTEN | CAT_GUARD)
    rs, re_, cat = regs[:, 0], regs[:, 1], regs[:, 2]
    # Regions never cross VMAs (the walk is per VMA), but clip to be safe: one piece per overlap.
    a = np.searchsorted(re_, vs, side="right")
    b = np.searchsorted(rs, ve, side="left")
    cnt = np.maximum(b - a, 0)
    vma = np.repeat(np.arange(len(vm), dtype=np.int32), cnt)
    idx = arange_runs(a.astype(np.int64), cnt.astype(np.int64))
    st = np.maximum(rs[idx], vs[vma]) >> U64(PAGE_SHIFT)
    en = np.minimum(re_[idx], ve[vma]) >> U64(PAGE_SHIFT)
    c = cat[idx]
    state = (((c & U64(CAT_PRESENT)) != 0).astype(U64) << U64(S_PRESENT)) \
        | (((c & U64(CAT_SWAPPED | CAT_GUARD)) == U64(CAT_SWAPPED)).astype(U64) << U64(S_SWAPPED)) \
        | (((c & U64(CAT_PRESENT | CAT_SWAPPED)) != 0) & ((c & U64(CAT_WRITTEN | CAT_GUARD)) == 0)).astype(U64) \
        << U64(S_UFFD_WP) \
        | (((c & U64(CAT_GUARD)) != 0).astype(U64) << U64(S_GUARD)) \
        | (((c & U64(CAT_FILE)) != 0).astype(U64) << U64(S_FILE)) \
        | (((c & U64(CAT_PFNZERO)) != 0).astype(U64) << U64(KPF["zero_page"])) \
        | (((c & U64(CAT_HUGE)) != 0).astype(U64) << U64(S_PMD))
    mc = np.where((c & U64(CAT_PRESENT)) != 0, -1, 0).astype(np.int64)
    known = Known(soft_dirty=proc.known.soft_dirty, categories=True)
    return Sample(proc.pid, proc.comm, vm, known, vma, st, (en - st).astype(np.int64), state & known.mask(), mc,
                  None, time.time(), seq, time.perf_counter() - t0, exclusive_known=False)
