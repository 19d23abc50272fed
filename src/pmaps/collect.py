"""Read a process's pages: PAGEMAP_SCAN (or the pagemap fallback), then kpageflags/kpagecount.

`open_process` streams (VMA, Pages) chunks in address order so that text and ndjson output
need memory for one chunk only; `collect` gathers them into a Snapshot.
"""
from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar
from dataclasses import dataclass

import numpy as np

from .errors import KernelThread, PmapsError, Unsupported, UsageError
from .kernel import caps as capsmod
from .kernel import pagemap as pmb
from .kernel import procfs
from .kernel.kpage import KPF_ABI_MASK, IdleReader, PfnReader, kpf_mask
from .kernel.maps import PAGE_SHIFT, Vma, decode_maps
from .kernel.scan import CAT_HUGE, CAT_UNKNOWN, TASK_SIZE_MAX, Scanner, probe
from .kernel.smaps import decode_smaps
from .model import Known, Pages, Snapshot

U64 = np.uint64
T = TypeVar("T")
R = TypeVar("R")
CHUNK_PAGES = 1 << 18  # pages per batch: ~10 MiB of columns; bounds peak memory
READ_GAP = 512  # read through holes up to this many pages (4 KiB) rather than split a read
NO_SCAN_ENV = "PMAPS_NO_SCAN"
FIRST_BATCH_PAGES = 1 << 12
THP_MASK = U64(511)  # PFNs of a PMD-sized folio: its head is aligned to 512
SCAN_GROUP_BYTES = 256 << 20  # VMAs scanned per PAGEMAP_SCAN call, at least one VMA
FALLBACK_ZERO_LIMIT = 4 << 30  # bytes of VMA (8 MiB of pagemap) read just to find zero pages


@dataclass(frozen=True)
class Options:
    """What to read. Reading less is cheaper (a pagemap-only sample skips kpageflags)."""

    flags: bool = True  # kpageflags
    counts: bool = True  # kpagecount
    scan: bool | None = None  # None: PAGEMAP_SCAN when the kernel has it (and PMAPS_NO_SCAN unset)
    chunk_pages: int = CHUNK_PAGES


def parse_pid(text: str) -> int:
    """A PID as typed: ASCII digits only (int() would also take ' 12', '+1' or Arabic digits)."""
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise UsageError(f"not a process ID: {text!r}")
    return int(text)


def _arange_runs(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s+l) for each run, vectorised (dtype of starts)."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=starts.dtype)
    if len(starts) == 1:
        return np.arange(total, dtype=starts.dtype) + starts[0]
    offs = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(starts.dtype)
    # uint64 arithmetic wraps, and the wrap cancels when the arange is added back
    return np.repeat(starts - offs, lens) + np.arange(total, dtype=starts.dtype)


class Process:
    """An open target: its VMAs, and a stream of its populated pages. Use as a context manager."""

    def __init__(self, pid: int, opts: Options = Options(), caps: capsmod.Caps | None = None) -> None:
        self.pid = pid
        self.opts = opts
        self.caps = caps or capsmod.probe()
        self.comm = procfs.read_file(pid, "comm").decode("utf-8", "replace").strip()
        self._fd: int | None = None
        self._kpage: PfnReader | None = None
        self.vmas: list[Vma] = decode_maps(procfs.read_file(pid, "maps"))
        if not self.vmas:
            # Kernel threads and zombies have no mm: maps reads empty (proc.rst).
            raise procfs.gone_error(pid, procfs.proc_path(pid, "maps"), started=False) if not procfs.is_kernel_thread(
                pid
            ) else KernelThread(f"process {pid} is a kernel thread: it has no user memory", pid)
        self._fd = procfs.open_pagemap(pid)
        want_scan = opts.scan
        if want_scan is None:
            want_scan = not os.environ.get(NO_SCAN_ENV)
        self.scanning = bool(want_scan) and probe(self._fd, pid)
        if want_scan is True and opts.scan is True and not self.scanning:
            raise Unsupported("this kernel has no PAGEMAP_SCAN (Linux 6.7+)", pid)
        pfn_ok = self.caps.sys_admin
        if pfn_ok and (opts.flags or opts.counts):
            self._kpage = PfnReader(want_flags=opts.flags, want_count=opts.counts)
        self._idle = IdleReader() if self._kpage is not None and self.caps.idle_tracking else None
        self.known = Known(
            pfn=pfn_ok,
            flags=bool(self._kpage and self._kpage.can_flags),
            count=bool(self._kpage and self._kpage.can_count),
            young=bool(self._idle and self._idle.fd is not None),
            soft_dirty=self.caps.soft_dirty,
            categories=self.scanning,
        )
        self._pfn_checked = False
        self._split_reads = True  # split kpage reads over two threads (off when chunks run in parallel)

    # -- populated regions -------------------------------------------------------------
    def _scan_groups(self) -> Iterator[tuple[range, np.ndarray]]:
        """(VMA indexes, [start_page, end_page, categories] of their populated space), sorted.

        PAGEMAP_SCAN runs over groups of consecutive VMAs, lazily: the reads of one group's
        pages start while the next group is still being scanned.
        """
        if not self.scanning:
            yield range(len(self.vmas)), self._fallback_regions()
            return
        scanner = Scanner(self._fd, self.pid)  # type: ignore[arg-type]
        lo = 0
        while lo < len(self.vmas):
            hi, size = lo, 0
            while hi < len(self.vmas) and (hi == lo or size < SCAN_GROUP_BYTES):
                size += self.vmas[hi].size
                hi += 1
            start, end = self.vmas[lo].start, min(self.vmas[hi - 1].end, TASK_SIZE_MAX)
            regs = scanner.regions(start, end) if start < end else np.zeros((0, 3), dtype=U64)
            yield range(lo, hi), _page_regions(regs)
            lo = hi

    def _fallback_regions(self) -> np.ndarray:
        """Whole VMAs, skipping those whose smaps say nothing is resident or swapped.

        smaps Rss leaves out the zero page, so a readable private anonymous VMA with Rss 0
        may still map it: read those too, unless so large that reading costs too much.
        """
        sm = decode_smaps(procfs.read_file(self.pid, "smaps", started=True))
        busy = {(r["start"], r["end"]) for r in sm if r.get("Rss", 0) or r.get("Swap", 0)}
        rows = []
        for v in self.vmas:
            if v.end > TASK_SIZE_MAX:
                continue
            maybe_zero = v.perms.startswith("r") and v.perms[3] == "p" and v.inode == 0
            if (v.start, v.end) in busy or (maybe_zero and v.size <= FALLBACK_ZERO_LIMIT):
                rows.append((v.start >> PAGE_SHIFT, v.end >> PAGE_SHIFT, CAT_UNKNOWN))
        return np.array(rows, dtype=U64).reshape(-1, 3)

    # -- reading -------------------------------------------------------------------------
    def _read_pagemap(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Entries for the pages of the given sorted, disjoint runs, in order."""
        lens = (ends - starts).astype(np.int64)
        # Coalesce runs separated by small holes into one read each.
        new = np.ones(len(starts), dtype=bool)
        new[1:] = (starts[1:] - ends[:-1]).astype(np.int64) > READ_GAP
        first = np.flatnonzero(new)
        seg_s = starts[first].astype(np.int64)
        seg_e = np.maximum.reduceat(ends.astype(np.int64), first)
        seg_len = seg_e - seg_s
        buf = np.zeros(int(seg_len.sum()), dtype="<u8")
        mv = memoryview(buf).cast("B")
        path = procfs.proc_path(self.pid, "pagemap")
        pos = 0
        for s, ln in zip(seg_s.tolist(), seg_len.tolist()):
            got = procfs.pread_into(self._fd, mv[pos * 8 : (pos + ln) * 8], s * 8, self.pid, path)  # type: ignore[arg-type]
            if got < ln * 8:
                # pagemap reads 0 bytes once the mm is gone (fs/proc/task_mmu.c pagemap_read).
                raise procfs.gone_error(self.pid, path, started=True)
            pos += ln
        if len(first) == len(starts):
            return buf  # no holes were read through: the buffer is the runs, in order
        seg_off = np.concatenate(([0], np.cumsum(seg_len)[:-1]))
        seg_id = np.cumsum(new) - 1
        run_buf = seg_off[seg_id] + (starts.astype(np.int64) - seg_s[seg_id])
        return buf[_arange_runs(run_buf.astype(np.int64), lens)]

    def _pages(self, regs: np.ndarray) -> Pages:
        starts, ends, cats = regs[:, 0], regs[:, 1], regs[:, 2]
        lens = (ends - starts).astype(np.int64)
        pm = self._read_pagemap(starts, ends)
        vpn = _arange_runs(starts, lens)
        cat = np.repeat(cats.astype(np.uint16), lens)
        keep = pmb.populated(pm)  # pages may have changed since the scan: trust pagemap
        if not keep.all():
            vpn, pm, cat = vpn[keep], pm[keep], cat[keep]
        pages = Pages(vpn, pm, cat)
        if self._kpage is not None:
            self._lookup(pages)
        return pages

    def _lookup(self, pages: Pages) -> None:
        if not self._pfn_checked and pmb.present(pages.pm).any():
            self._pfn_checked = True
            if not pfns_visible(pages):
                self._drop_page_info()
                return
        lookup_pages(pages, self._kpage, self._idle, split=self._split_reads)  # type: ignore[arg-type]

    def _drop_page_info(self) -> None:
        if self._kpage is not None:
            self._kpage.close()
        if self._idle is not None:
            self._idle.close()
        self._kpage = self._idle = None
        self.known = Known(soft_dirty=self.known.soft_dirty, categories=self.known.categories)

    def chunks(self, workers: int = 2) -> Iterator[tuple[int, Pages]]:
        """(VMA index, Pages) in address order; a VMA may come in several chunks."""
        starts = np.array([v.start >> PAGE_SHIFT for v in self.vmas], dtype=U64)
        ends = np.array([v.end >> PAGE_SHIFT for v in self.vmas], dtype=U64)
        for pages in self.batches(workers):
            if not len(pages):
                continue
            # The VMAs this batch touches, and where each one's pages start and end in it.
            lo = int(np.searchsorted(ends, pages.vpn[0], side="right"))
            hi = int(np.searchsorted(starts, pages.vpn[-1], side="right"))
            cut_lo = np.searchsorted(pages.vpn, starts[lo:hi]).tolist()
            cut_hi = np.searchsorted(pages.vpn, ends[lo:hi]).tolist()
            for i, a, b in zip(range(lo, hi), cut_lo, cut_hi):
                if b > a:
                    yield i, pages.take(slice(a, b))

    def batches(self, workers: int = 2) -> Iterator[Pages]:
        """Populated pages in address order, in batches of about chunk_pages pages.

        A batch may span many small VMAs: one pagemap pass and one kpage lookup for all of
        them. Batches are read by `workers` threads, a few ahead of the caller, and handed
        over in order: the reads spend their time in the kernel (pagemap, kpageflags) without
        the GIL, so two cores read while the caller renders. Memory stays bounded by the window.
        """
        todo = self._batch_regions()
        # The first batch runs alone: it decides whether PFNs are real (see _lookup) before
        # any worker shares the kpage reader. A small process is a single batch: no threads.
        for regs in todo:
            yield self._pages(regs)
            break
        if workers <= 1:
            yield from (self._pages(regs) for regs in todo)
        else:
            self._split_reads = False  # the workers are the parallelism
            yield from _ordered_map(self._pages, todo, workers, ahead=2 * workers)
        self.check_alive()

    def _batch_regions(self) -> Iterator[np.ndarray]:
        """[start_page, end_page, categories] regions in address order, about chunk_pages pages a batch."""
        # The first batch is read alone (see batches()): keep it small so the workers start soon.
        limit = min(self.opts.chunk_pages, FIRST_BATCH_PAGES)
        pending: list[np.ndarray] = []
        size = 0
        for _idxs, regs in self._scan_groups():
            for piece in _split_regions(regs, limit) if len(regs) else ():
                n = int(piece[:, 1].sum() - piece[:, 0].sum())
                if pending and size + n > limit:
                    yield np.concatenate(pending) if len(pending) > 1 else pending[0]
                    pending, size = [], 0
                    limit = self.opts.chunk_pages
                pending.append(piece)
                size += n
        if pending:
            yield np.concatenate(pending) if len(pending) > 1 else pending[0]

    def check_alive(self) -> None:
        """After a scan: a process that exited mid-scan must not pass as a quiet one."""
        state = procfs.process_state(self.pid)
        if state is None or state in ("Z", "X"):
            raise procfs.gone_error(self.pid, procfs.proc_path(self.pid, "pagemap"), started=True)

    def close(self) -> None:
        procfs.close(self._fd)
        self._fd = None
        if self._kpage is not None:
            self._kpage.close()
            self._kpage = None
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self, workers: int = 2) -> Snapshot:
        parts = list(self.batches(workers))
        snap = Snapshot(self.pid, self.comm, self.vmas, Pages.concat(parts), self.known)
        snap.notes = missing_notes(self.known)
        return snap


def pfns_visible(pages: Pages) -> bool:
    """False when present pages all read PFN 0: root whose CAP_SYS_ADMIN was dropped opens
    kpageflags yet reads PFN 0 from pagemap (pagemap.rst, since 4.2), and PFN 0's flags
    are not these pages'."""
    pres = pmb.present(pages.pm)
    return not pres.any() or bool((pages.pm[pres] & pmb.PM_PFN_MASK).any())


def lookup_pages(pages: Pages, reader: PfnReader, idle: IdleReader | None = None, split: bool = True) -> None:
    """Fill pages.kflags and pages.kcount (and pages.idle) for the present pages, in place."""
    pres = pmb.present(pages.pm)
    allp = bool(pres.all())
    pm = pages.pm if allp else pages.pm[pres]
    pfn = pm & pmb.PM_PFN_MASK
    # pagemap's "exclusively mapped" bit is set exactly when the page's mapcount is 1, the
    # same count kpagecount reports (fs/proc/task_mmu.c, 6.x: folio_precise_page_mapcount;
    # checked by tests/test_kernel_facts.py): read kpagecount only for the other pages.
    shared = (pmb.top_byte(pm) & pmb.TOP_EXCLUSIVE) == 0
    # A PMD-mapped THP is one naturally aligned 512-page folio, and kpageflags' bits are the
    # folio's but for COMPOUND_HEAD/TAIL (fs/proc/page.c stable_page_flags): read the head's
    # flags once and derive the 511 tails' (checked against real reads by the tests).
    cat = pages.cat if allp else pages.cat[pres]
    tails = ((cat & CAT_HUGE) != 0) & ((cat & CAT_UNKNOWN) == 0) & ((pfn & THP_MASK) != 0)
    flag_pfn = np.where(tails, pfn & ~THP_MASK, pfn) if tails.any() else pfn
    flags, count = reader.lookup(pfn, shared, split=split, flag_pfns=flag_pfn)
    if flags is not None and flag_pfn is not pfn:
        # Only the ABI bits carry over: kernel-internal ones (32+) may be per page.
        flags[tails] = (flags[tails] & KPF_ABI_MASK & ~kpf_mask("compound_head")) | kpf_mask("compound_tail")
    if idle is not None:
        # Y: the pte young bit, via idle page tracking: a page not idle is young (KERNEL.md).
        bits = idle.lookup(pfn)
        if bits is not None:
            pages.idle = np.zeros(len(pages), dtype=bool)
            pages.idle[pres] = bits
    if count is not None:
        kc = np.ones(len(pfn), dtype=U64)
        kc[shared] = count
        count = kc
    if allp:
        pages.kflags, pages.kcount = flags, count
        return
    if flags is not None:
        pages.kflags = np.zeros(len(pages), dtype=U64)
        pages.kflags[pres] = flags
    if count is not None:
        pages.kcount = np.zeros(len(pages), dtype=U64)
        pages.kcount[pres] = count


def _page_regions(regs: np.ndarray) -> np.ndarray:
    """Regions in bytes -> in pages (start, end), categories kept."""
    out = np.empty_like(regs)
    out[:, :2] = regs[:, :2] >> U64(PAGE_SHIFT)
    out[:, 2] = regs[:, 2]
    return out


def _split_regions(regs: np.ndarray, limit: int) -> Iterator[np.ndarray]:
    """Split sorted regions into groups of about `limit` pages (at most 2 * limit)."""
    lens = (regs[:, 1] - regs[:, 0]).astype(np.int64)
    if lens.sum() <= limit:
        yield regs
        return
    long = np.flatnonzero(lens > limit)
    if len(long):
        # Cut the few regions longer than the limit into limit-sized pieces.
        rows: list[np.ndarray] = []
        prev = 0
        for k in long.tolist():
            rows.append(regs[prev:k])
            s, e, c = (int(x) for x in regs[k])
            cuts = np.arange(s, e, limit, dtype=np.uint64)
            rows.append(np.stack([cuts, np.minimum(cuts + np.uint64(limit), np.uint64(e)),
                                  np.full(len(cuts), c, dtype=np.uint64)], axis=1))
            prev = k + 1
        rows.append(regs[prev:])
        regs = np.concatenate(rows)
        lens = (regs[:, 1] - regs[:, 0]).astype(np.int64)
    group = np.cumsum(lens) // limit
    # A piece that straddles a group boundary stays with the earlier group.
    yield from np.split(regs, np.flatnonzero(np.diff(group)) + 1)


def _ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int) -> Iterator[R]:
    """fn over items on `workers` threads, at most `ahead` in flight, results in order."""
    from concurrent.futures import ThreadPoolExecutor

    window: collections.deque = collections.deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="pmaps-read") as ex:
        try:
            for item in items:
                window.append(ex.submit(fn, item))
                if len(window) >= ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for f in window:
                f.cancel()


def missing_notes(known: Known, pfn: bool = False) -> list[str]:
    """What a view of these pages cannot tell, in phrases for one stderr line."""
    out = []
    if pfn and not known.pfn:
        out.append("PFNs (pagemap shows them only to CAP_SYS_ADMIN, since Linux 4.2)")
    if not (known.flags and known.count):
        out.append("page flags and map counts (need CAP_SYS_ADMIN and /proc/kpageflags, kpagecount: run as root)")
    if not known.young:
        out.append("Y (no idle page tracking in this kernel)")
    if not known.soft_dirty:
        out.append("P (no soft-dirty in this kernel)")
    if not known.zero:
        out.append("the zero page (needs PAGEMAP_SCAN or root)")
    return out


def collect(pid: int, *, flags: bool = True, counts: bool = True, scan: bool | None = None) -> Snapshot:
    """Snapshot of a process's memory, page by page. Raises PmapsError subclasses."""
    with Process(pid, Options(flags=flags, counts=counts, scan=scan)) as proc:
        return proc.snapshot()


__all__ = ["Options", "Process", "collect", "parse_pid", "PmapsError"]
