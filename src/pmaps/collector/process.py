"""Read one process's pages: PAGEMAP_SCAN (or the pagemap fallback), then kpageflags/kpagecount.

`Process` streams (VMA, Pages) chunks in address order so that text and ndjson output need
memory for one chunk only; `collect` gathers them into a Snapshot. The populated regions come from
one place (`Process.regions`), which the sample collector shares.
"""
from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import PidReused, PmapsError, Unsupported
from ..kernel import caps as capsmod
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.idle import IdleBitmap
from ..kernel.kpage import PfnReader, lookup_cgroup
from ..kernel.maps import PAGE_SHIFT, Vma, VmaTable, decode_table, read_file_vmas, read_table
from ..kernel.pagemap import (
    CAT_SHMEM_SWAP,
    CAT_UNKNOWN,
    PAGES_RETURN_MASK,
    SCAN_MAX_PAGES,
    SHMEM_SWAP_ENTRY,
    TASK_SIZE_MAX,
    Scanner,
    probe,
    read_runs,
)
from ..kernel.status import read_comm, read_start_time
from ..model import Known, Pages, Snapshot, inside_vmas
from ..model.snapshot import vma_index
from ..numeric import arange_runs, consecutive_runs
from .lookup import lookup_pages, pfns_visible
from .observer import Observer
from .options import NO_SCAN_ENV, Options
from .parallel import background, ordered_map, reader_threads

U64 = np.uint64
FIRST_BATCH_PAGES = 1 << 12
SCAN_GROUP_BYTES = 256 << 20  # VMAs scanned together, at least one VMA
FALLBACK_ZERO_LIMIT = 4 << 30  # bytes of VMA (8 MiB of pagemap) read just to find zero pages
MAPS_TRIES = 4  # maps reads until two well-formed ones agree
PROGRESS_PAGES = 1 << 27  # fallback reads of more pages than this (512 GiB of VMA, about a second) report progress


class Process:
    """An open target: its VMAs, and a stream of its populated pages. Use as a context manager."""

    def __init__(self, pid: int, opts: Options = Options(), caps: capsmod.Caps | None = None) -> None:
        """Nothing is read until open() (or `with`)."""
        self.pid = pid
        self.opts = opts
        self.caps = caps
        self.comm = ""
        self.start_time = 0  # /proc/PID/stat field 22: with pid, who this process is
        # The VMAs as columns (and the lines as read): Vma objects are built only when `vmas` is read.
        self.table = VmaTable.of_vmas([])
        self.scanning = False
        # Did maps read the same at the last sample as the table it was read with (collector.sample)?
        self.maps_steady = False
        self._known = Known()
        self._fd: int | None = None
        self._kpage: PfnReader | None = None
        self._idle: IdleBitmap | None = None
        # Read on a helper thread from open() on (see _open); lookups wait for it when they need it.
        self._observer: Callable[[], Observer | None] | None = None
        self._pfn_checked = False
        # Called with (pages read, pages to read) as the pagemap fallback reads through large VMAs
        # (a 16 TiB heap takes half a minute); set by a command that reports progress.
        self.progress: Callable[[int, int], None] | None = None
        self._fallback_pages = 0
        self._split_reads = True  # split kpage reads over two threads (off when chunks run in parallel)

    def open(self) -> Process:
        """Read comm and maps, open pagemap (and kpageflags/kpagecount/the idle bitmap when allowed)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        pid, opts = self.pid, self.opts
        caps = self.caps = self.caps or capsmod.probe()
        self.start_time = read_start_time(pid)
        self.comm = read_comm(pid)
        # file_vmas: only the VMAs of files and shared memory (pmaps cgroups' mapped-by join)
        if opts.file_vmas:
            self.table = VmaTable.of_vmas(read_file_vmas(pid))
        elif opts.maps:
            # Read ahead by the command while it imported (procfs.read_ahead), when it was.
            self.table = read_table(pid, data=procfs.take_ahead(pid, "maps", self.start_time))
        elif procfs.process_state(pid) in (None, "Z", "X") or procfs.is_kernel_thread(pid):
            # What read_table's empty maps would say: no such process, a zombie, a kernel thread.
            raise procfs.gone_error(pid, procfs.proc_path(pid, "maps"), started=False)
        self._fd = procfs.open_pagemap(pid)
        self.check_identity()  # the same start time after the reads: they were all of this process
        want_scan = opts.scan
        if want_scan is None:
            want_scan = not os.environ.get(NO_SCAN_ENV)
        self.scanning = bool(want_scan) and probe(self._fd, pid)
        if opts.scan is True and not self.scanning:
            raise Unsupported("this kernel has no PAGEMAP_SCAN (Linux 6.7+)", pid)
        if caps.sys_admin and (opts.flags or opts.counts):
            self._kpage = PfnReader(want_flags=opts.flags, want_count=opts.counts)
            if caps.idle_tracking:
                self._idle = IdleBitmap.try_open()
            if opts.counts and not opts.include_self:
                # pmaps' own pages (10-20 ms: its maps, pagemap, and numpy.ma's first import by
                # np.unique) are read while the target's scan and first reads go on; the first
                # kpagecount subtraction waits for them (on one CPU they are read first: background).
                self._observer = background(Observer.read)
        self._known = Known(
            pfn=caps.sys_admin,
            flags=bool(self._kpage and self._kpage.can_flags),
            count=bool(self._kpage and self._kpage.can_count),
            young=self._idle is not None,
            soft_dirty=caps.soft_dirty,
            categories=self.scanning,
        )

    @property
    def vmas(self) -> list[Vma]:
        """The VMAs as Vma objects (made on first use: the reading and the 2007 view use the table)."""
        return self.table.vmas

    @vmas.setter
    def vmas(self, vmas: list[Vma]) -> None:
        self.table = VmaTable.of_vmas(vmas)

    @property
    def known(self) -> Known:
        """What the pages carry; may lose pfn/flags/count after the first chunk (see _lookup)."""
        return self._known

    def refresh_vmas(self) -> list[Vma]:
        """refresh_table, as Vma objects."""
        return self.refresh_table().vmas

    def refresh_table(self) -> VmaTable:
        """VMAs change between samples: re-read maps (the pagemap fd stays open).

        A maps read is several page-sized reads, and the VMA tree may change between them: a
        read of a process that maps, unmaps and mprotects can list VMAs that never coexisted,
        overlapping or out of order (seq_file, fs/proc/task_mmu.c). Read until two well-formed
        reads agree (at most MAPS_TRIES); a target that changes faster than that gets its last
        well-formed read. The sample's checks before it is stored catch what still slips by.
        """
        # Compared as bytes, decoded once: a maps of 65,000 VMAs costs 0.1 s to decode. A read equal
        # to the one the table was decoded from keeps the table (the same object: a sample's
        # consumers skip work for VMAs that did not change) and is the second read that agrees:
        # a still process's maps is read once a sample (20 ms for 65,000 VMAs).
        good: bytes | None = None
        last: VmaTable | None = None
        for _ in range(MAPS_TRIES):
            raw = procfs.read_file(self.pid, "maps", started=True)
            if raw == good:
                break
            cur = self.table if raw == self.table.source else decode_table(raw)
            if not len(cur):
                raise procfs.gone_error(self.pid, procfs.proc_path(self.pid, "maps"), started=True)
            last = cur
            if _well_formed(cur):
                if cur is self.table:
                    break  # the same bytes as the read the table came from: two reads agree
                good, self.table = raw, cur
        if good is None and last is not None:
            # Never well formed: its last read (the sample's checks catch the rest).
            self.table = last
        return self.table

    def check_identity(self) -> None:
        """PidReused when the PID now names another process (its start time changed), the
        usual errors when it is gone. A sample is of this process when this holds before and
        after it: a PID is never reused while its process lives."""
        try:
            now = read_start_time(self.pid, started=True)
        except (ValueError, PmapsError):
            now = None
        if now is None or procfs.process_state(self.pid) in (None, "Z", "X"):
            raise procfs.gone_error(self.pid, procfs.proc_path(self.pid, "stat"), started=True)
        if now != self.start_time:
            raise PidReused(f"process {self.pid} ({self.comm}) exited and its PID now belongs to another "
                            f"process (start time {self.start_time} -> {now} ticks)", self.pid)

    # -- populated regions -------------------------------------------------------------
    def regions(self, start: int, end: int, returns: int = PAGES_RETURN_MASK) -> np.ndarray:
        """PAGEMAP_SCAN regions [start, end, categories] in bytes for [start, end): the one scan path.
        `returns`: the categories wanted (pagemap-only samples need present/swapped/file too)."""
        assert self._fd is not None
        end = min(end, TASK_SIZE_MAX)
        if start >= end:
            return np.zeros((0, 3), dtype=U64)
        return Scanner(self._fd, self.pid, returns=returns, max_pages=SCAN_MAX_PAGES).regions(start, end)

    def _scan_groups(self) -> Iterator[tuple[range, np.ndarray]]:
        """(VMA indexes, [start_page, end_page, categories] of their populated space), sorted.

        PAGEMAP_SCAN runs over groups of consecutive VMAs, lazily: the reads of one group's
        pages start while the next group is still being scanned.
        """
        t = self.table
        if not self.scanning:
            yield range(len(t)), self._fallback_regions()
            return
        # Groups of consecutive VMAs of at least SCAN_GROUP_BYTES (at least one VMA each): a group
        # ends at the first VMA whose running size reaches the bound.
        size = np.cumsum((t.end - t.start).astype(np.int64))
        lo = 0
        starts, ends = t.start.tolist(), t.end.tolist()
        while lo < len(t):
            base = int(size[lo - 1]) if lo else 0
            hi = max(int(np.searchsorted(size, base + SCAN_GROUP_BYTES, side="left")) + 1, lo + 1)
            hi = min(hi, len(t))
            start, end = starts[lo], min(ends[hi - 1], TASK_SIZE_MAX)
            regs = _page_regions(self.regions(start, end))
            yield range(lo, hi), self._with_shmem_swap(range(lo, hi), regs)
            lo = hi

    def _fallback_regions(self) -> np.ndarray:
        """Whole VMAs, skipping those whose smaps say nothing is resident or swapped.

        smaps Rss leaves out the zero page, so a readable private anonymous VMA with Rss 0
        may still map it: read those too, unless so large that reading costs too much.
        """
        from ..kernel.smaps import read_smaps  # the fallback only: off the start-up path

        sm = read_smaps(self.pid, started=True)
        busy = {(r["start"], r["end"]) for r in sm if r.get("Rss", 0) or r.get("Swap", 0)}
        rows = []
        for v in self.vmas:
            if v.end > TASK_SIZE_MAX:
                continue
            maybe_zero = v.perms.startswith("r") and v.perms[3] == "p" and v.inode == 0
            if (v.start, v.end) in busy or (maybe_zero and v.size <= FALLBACK_ZERO_LIMIT):
                rows.append((v.start >> PAGE_SHIFT, v.end >> PAGE_SHIFT, CAT_UNKNOWN))
        regs = np.array(rows, dtype=U64).reshape(-1, 3)
        self._fallback_pages = int((regs[:, 1] - regs[:, 0]).sum())
        return self._with_shmem_swap(range(len(self.vmas)), regs)

    def _with_shmem_swap(self, idxs: range, regs: np.ndarray) -> np.ndarray:
        """Add the swapped-out shmem pages of these VMAs as regions of CAT_SHMEM_SWAP (pages with no
        pte: not in `regs`, whose pages have one). Root only (map_files); a no-op without it."""
        if not self.caps or not self.caps.sys_admin:
            return regs
        from ..kernel.shmem import swapped_pages  # only where a VMA is on shmem: off the start-up path

        extra = []
        inode = self.table.inode[idxs.start:idxs.stop]
        for i in (idxs.start + np.flatnonzero(inode)).tolist():  # file VMAs: the others are not shmem
            v = self.table.vma(i)
            if not v.dev.startswith("00:"):  # shmem lives on anonymous devices (major 0)
                continue
            sw = swapped_pages(self.pid, v.start, v.end, v.pgoff)
            if sw is None or not sw.any():
                continue
            vpn = (v.start >> PAGE_SHIFT) + np.flatnonzero(sw).astype(U64)
            if len(regs):  # pages with a pte (present, or an anonymous COW copy swapped) are not these
                k = np.searchsorted(regs[:, 0], vpn, side="right") - 1
                inside = (k >= 0) & (vpn < regs[np.maximum(k, 0), 1])
                vpn = vpn[~inside]
            first, n = consecutive_runs(vpn)
            if len(first):
                s = vpn[first]
                extra.append(np.stack([s, s + n.astype(U64), np.full(len(s), CAT_SHMEM_SWAP, dtype=U64)], axis=1))
        if not extra:
            return regs
        out = np.concatenate([regs, *extra])
        return out[np.argsort(out[:, 0], kind="stable")]

    # -- reading -------------------------------------------------------------------------
    def entries(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Raw pagemap entries of sorted, disjoint [start, end) page runs, in order."""
        assert self._fd is not None
        return read_runs(self._fd, self.pid, starts, ends)

    def _pages(self, regs: np.ndarray | Pages, lookup: bool = True) -> Pages:
        """The pages of [start_page, end_page, categories] regions, looked up; Pages already read
        (the first batch, see batches()) are only looked up."""
        if isinstance(regs, Pages):
            if self._kpage is not None and lookup:
                self._lookup(regs)
            return regs
        starts, ends, cats = regs[:, 0], regs[:, 1], regs[:, 2]
        lens = (ends - starts).astype(np.int64)
        assert self._fd is not None
        pm = read_runs(self._fd, self.pid, starts, ends)
        vpn = arange_runs(starts, lens)
        cat = np.repeat(cats.astype(np.uint16), lens)
        if (cats & U64(CAT_SHMEM_SWAP)).any():  # asked of the regions, not of every page
            shm = (cat & CAT_SHMEM_SWAP) != 0
            # No pte: the entry pagemap has for it is empty; mark it swapped, unless it changed.
            pm = np.where(shm & ~pmb.populated(pm), U64(SHMEM_SWAP_ENTRY), pm)
        keep = pmb.populated(pm)  # pages may have changed since the scan: trust pagemap
        if not keep.all():
            vpn, pm, cat = vpn[keep], pm[keep], cat[keep]
        pages = Pages(vpn, pm, cat)
        if self._kpage is not None and lookup:
            self._lookup(pages)
        return pages

    def region_pages(self, regs: np.ndarray) -> Pages:
        """The populated pages of sorted, disjoint [start_page, end_page, categories] regions (e.g.
        from `regions`, in pages), read and looked up now: a part of the process, not its table."""
        return self._pages(regs)

    def _check_pfns(self, pages: Pages) -> None:
        """The first pages with a present one decide whether PFNs are real (see pfns_visible)."""
        if not self._pfn_checked and pmb.present(pages.pm).any():
            self._pfn_checked = True
            if not pfns_visible(pages):
                self._drop_page_info()

    def _lookup(self, pages: Pages) -> None:
        self._check_pfns(pages)
        if self._kpage is None:
            return
        lookup_pages(pages, self._kpage, self._idle, split=self._split_reads, observer=self._observer)
        if self.opts.cgroup:
            pres = pmb.present(pages.pm)
            cg = lookup_cgroup(pages.pfn[pres])
            if cg is not None:
                pages.kcgroup = np.zeros(len(pages), dtype=U64)
                pages.kcgroup[pres] = cg

    def _drop_page_info(self) -> None:
        if self._kpage is not None:
            self._kpage.close()
        if self._idle is not None:
            self._idle.close()
        self._kpage = self._idle = None
        self._known = Known(soft_dirty=self._known.soft_dirty, categories=self._known.categories)

    def chunks(self, workers: int | None = None) -> Iterator[tuple[int, Pages]]:
        """(VMA index, Pages) in address order; a VMA may come in several chunks."""
        starts, ends = self.table.start_page, self.table.end_page
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

    def groups(self, workers: int | None = None) -> Iterator[tuple[Pages, np.ndarray]]:
        """(Pages, VMA index per page) a batch at a time, in address order; pages outside every VMA
        (grown into a scan group's gap after maps was read) dropped."""
        bounds = self.table.start_page, self.table.end_page
        for pages in self.batches(workers):
            if len(pages):
                yield vma_index(pages, self.table, bounds)

    def batches(self, workers: int | None = None, *, lookup: bool = True) -> Iterator[Pages]:
        """Populated pages in address order, in batches of about chunk_pages pages.

        A batch may span many small VMAs: one pagemap pass and one kpage lookup for all of
        them. Batches are read by `workers` threads, a few ahead of the caller, and handed
        over in order: the reads spend their time in the kernel (pagemap, kpageflags) without
        the GIL, so two cores read while the caller renders. Memory stays bounded by the window.
        workers: by default 2, or 1 where pmaps may run on one CPU only (reader_threads).
        """
        if workers is None:
            workers = reader_threads()
        todo = self._batch_regions()
        read = functools.partial(self._pages, lookup=lookup)
        first = next(todo, None)
        if first is None:
            pass
        elif workers <= 1:
            yield read(first)
            yield from map(read, todo)
        else:
            # The first batch's pagemap is read here: it decides whether PFNs are real (see
            # _lookup) before any worker shares the kpage reader. Its lookup goes to the workers
            # with the other batches. A small process is a single batch: no threads.
            pages = self._pages(first, lookup=False)
            if lookup and self._kpage is not None:
                self._check_pfns(pages)
            rest = list(itertools.islice(todo, 1))
            if not rest:
                yield read(pages)
            else:
                self._split_reads = False  # the workers are the parallelism
                yield from ordered_map(read, itertools.chain([pages], rest, todo), workers, ahead=2 * workers)
        self.check_alive()
        self.check_identity()

    def _batch_regions(self) -> Iterator[np.ndarray]:
        """[start_page, end_page, categories] regions in address order, about chunk_pages pages a batch."""
        # The first batch is read alone (see batches()): keep it small so the workers start soon.
        limit = min(self.opts.chunk_pages, FIRST_BATCH_PAGES)
        pending: list[np.ndarray] = []
        size = 0

        def pieces() -> Iterator[np.ndarray]:
            first = True
            for _idxs, regs in self._scan_groups():
                for piece in _split_regions(regs, self.opts.chunk_pages) if len(regs) else ():
                    if first:  # only the first piece is cut finer, for the small first batch
                        first = False
                        yield from _split_regions(piece, limit)
                    else:
                        yield piece

        done = 0
        for piece in pieces():
            n = int(piece[:, 1].sum() - piece[:, 0].sum())
            done += n
            if self.progress is not None and self._fallback_pages >= PROGRESS_PAGES:
                self.progress(done, self._fallback_pages)
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
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self, workers: int | None = None) -> Snapshot:
        pages = self.pages(workers)
        return Snapshot(self.pid, self.comm, self.vmas, pages, self.known, table=self.table)

    def pages(self, workers: int | None = None, *, lookup: bool = True) -> Pages:
        """Every populated page of the table's VMAs now (a snapshot's pages, without the Vma
        objects). lookup=False reads pagemap only: no kpageflags or kpagecount however opened
        (what pagemap and the scan's categories tell: present, swapped, PFN, file, zero)."""
        pages = Pages.concat(list(self.batches(workers, lookup=lookup)))
        # A scan group spans the gaps between its VMAs: a VMA that grew into one after maps
        # was read (brk, mremap) yields pages outside every VMA of this snapshot. Drop them.
        inside = inside_vmas(pages.vpn, self.table)
        if not inside.all():
            pages = pages.take(inside)
        return pages


def _well_formed(table: VmaTable) -> bool:
    """VMAs in address order, none overlapping the next: what one consistent maps read lists."""
    return bool((table.end[:-1] <= table.start[1:]).all())


def _page_regions(regs: np.ndarray) -> np.ndarray:
    """Regions in bytes -> in pages (start, end), categories kept."""
    out = np.empty_like(regs)
    out[:, :2] = regs[:, :2] >> U64(PAGE_SHIFT)
    out[:, 2] = regs[:, 2]
    return out


def _split_regions(regs: np.ndarray, limit: int) -> Iterator[np.ndarray]:
    """Split sorted regions into groups of about `limit` pages (at most 2 * limit), lazily.

    A region longer than the limit (a 16 TiB heap read by the pagemap fallback) is cut into
    limit-sized pieces one at a time, never into an array of millions of pieces at once."""
    lens = (regs[:, 1] - regs[:, 0]).astype(np.int64)
    if lens.sum() <= limit:
        yield regs
        return
    prev = 0
    for k in [*np.flatnonzero(lens > limit).tolist(), len(regs)]:
        small = regs[prev:k]
        if len(small):
            # Regions up to the limit: grouped by their running total; a region that straddles a
            # group boundary stays with the earlier group.
            group = np.cumsum(lens[prev:k]) // limit
            yield from np.split(small, np.flatnonzero(np.diff(group)) + 1)
        if k < len(regs):
            s, e, c = (int(x) for x in regs[k])
            for cut in range(s, e, limit):
                yield np.array([[cut, min(cut + limit, e), c]], dtype=np.uint64)
        prev = k + 1


def collect(pid: int, *, flags: bool = True, counts: bool = True, scan: bool | None = None,
            include_self: bool = False) -> Snapshot:
    """Snapshot of a process's memory, page by page. Raises PmapsError subclasses."""
    with Process(pid, Options(flags=flags, counts=counts, scan=scan, include_self=include_self)) as proc:
        return proc.snapshot()

