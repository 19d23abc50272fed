"""/proc/kpageflags, kpagecount, kpagecgroup: the flag table, batched lookups by PFN, and whole-range reads.

Bits from include/uapi/linux/kernel-page-flags.h; letters from tools/mm/page-types.c.
The lookup plan is pure (numpy on PFN arrays); only `PfnReader` reads, through procfs. The compiled
core (native.py, _kpage.c), when built, makes the same plans and reads the same spans without the GIL.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from ..errors import AccessDenied
from ..numeric import arange_runs, merge_intervals, seg_offsets, unique_sorted
from . import procfs
from .native import Core
from .native import load as load_core

# The one kpageflags table: (bit, pmaps name, page-types letter, page-types name). Bits 0-26 are
# ABI (include/uapi/linux/kernel-page-flags.h); 32-41 are kernel-internal, fs/proc/page.c
# KPF_RESERVED..KPF_ARCH_2, shown only in page-types' raw mode (`phys --raw`). Letters and
# page-types names: page_flag_names[] of tools/mm/page-types.c.
KPF_TABLE: tuple[tuple[int, str, str, str], ...] = (
    (0, "locked", "L", "locked"),
    (1, "error", "E", "error"),
    (2, "referenced", "R", "referenced"),
    (3, "uptodate", "U", "uptodate"),
    (4, "dirty", "D", "dirty"),
    (5, "lru", "l", "lru"),
    (6, "active", "A", "active"),
    (7, "slab", "S", "slab"),
    (8, "writeback", "W", "writeback"),
    (9, "reclaim", "I", "reclaim"),
    (10, "buddy", "B", "buddy"),
    (11, "mmap", "M", "mmap"),
    (12, "anon", "a", "anonymous"),
    (13, "swapcache", "s", "swapcache"),
    (14, "swapbacked", "b", "swapbacked"),
    (15, "compound_head", "H", "compound_head"),
    (16, "compound_tail", "T", "compound_tail"),
    (17, "huge", "G", "huge"),
    (18, "unevictable", "u", "unevictable"),
    (19, "hwpoison", "X", "hwpoison"),
    (20, "nopage", "n", "nopage"),
    (21, "ksm", "x", "ksm"),
    (22, "thp", "t", "thp"),
    (23, "offline", "o", "offline"),
    (24, "zero_page", "z", "zero_page"),
    (25, "idle", "i", "idle_page"),
    (26, "pgtable", "g", "pgtable"),
    (32, "reserved", "r", "reserved"),
    (33, "mlocked", "m", "mlocked"),
    (34, "mappedtodisk", "d", "mappedtodisk"),
    (35, "private", "P", "private"),
    (36, "private_2", "p", "private_2"),
    (37, "owner_private", "O", "owner_private"),
    (38, "arch", "h", "arch"),
    (39, "uncached", "c", "uncached"),
    (40, "softdirty", "f", "softdirty"),
    (41, "arch_2", "H", "arch_2"),
)
# The ABI bits as (bit, name, letter): what --flags=all and the JSON names show.
KPF_BITS: tuple[tuple[int, str, str], ...] = tuple((b, n, ch) for b, n, ch, _ in KPF_TABLE if b < 32)
KPF = {name: b for b, name, _ in KPF_BITS}
KPF_ABI_MASK = np.uint64((1 << 27) - 1)


def kpf_mask(*names: str) -> np.uint64:
    return np.uint64(sum(1 << KPF[n] for n in names))


def decode_u64(data: bytes | bytearray | memoryview) -> np.ndarray:
    """kpageflags/kpagecount/kpagecgroup content: one little-endian u64 per PFN."""
    if len(data) % 8:
        raise ValueError(f"{len(data)} bytes is not a multiple of 8")
    return np.frombuffer(data, dtype="<u8")


# A read call costs about as much as reading this many PFNs' entries; gaps shorter than this are
# read through, not split in two calls. Measured on 6.18 (C, one pread per 1..65536 PFNs):
# kpageflags ~0.3 us a call and 110-115 ns a PFN (6.18's snapshot_page() copies each page and
# folio), kpagecount ~0.3 us and ~100 ns. bench/replay.py of a 65,531-VMA process's reads: 8%
# less kernel time than with the 24 of older kernels' ~1 us a call and ~65 ns a PFN.
PFNS_PER_CALL = 3
MAX_READ = 1 << 20  # PFNs per pread (8 MiB of u64)


class LookupPlan:
    """Where to read and where each page's entry lands in the concatenated buffer. A plain slotted
    class: a slotted dataclass costs 0.6 ms of every start-up to make."""

    __slots__ = ("index", "seg_len", "seg_start")

    def __init__(self, seg_start: np.ndarray, seg_len: np.ndarray, index: np.ndarray) -> None:
        self.seg_start = seg_start  # first PFN of each segment to read
        self.seg_len = seg_len  # PFNs in each segment
        self.index = index  # per input page: position of its entry in the buffer

    @property
    def total(self) -> int:
        return int(self.seg_len.sum())


def plan_lookup(pfns: np.ndarray, gap: int = PFNS_PER_CALL, core: Core | None = None) -> LookupPlan:
    """Coalesce PFNs into few contiguous read segments, without sorting every page.

    Pages come in virtual order, where physically contiguous runs are common (THP, fresh
    memory); runs are found first, then only the runs are sorted and merged. With the compiled
    core, the same plan made in C (PFNs must be < 2**55, as pagemap's are).
    """
    pfns = np.ascontiguousarray(pfns, dtype=np.uint64)
    n = len(pfns)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return LookupPlan(empty, empty, empty)
    if core is not None:
        index = np.empty(n, np.int64)
        starts, lens = core.plan(pfns, gap, index)
        return LookupPlan(np.frombuffer(starts, np.int64), np.frombuffer(lens, np.int64), index)
    p = pfns.view(np.int64)  # PFNs are < 2**55: the same values, no copy
    # A run continues while the PFN steps by +1, 0 or -1: physically contiguous pages in either
    # direction (anonymous memory faulted in address order comes as often in falling PFN order,
    # from the per-CPU free lists, as in rising: 0.61 M and 0.77 M steps of an 8 GiB process on
    # 6.18) and the zero page mapped over and over. Steps of at most one visit every PFN between a
    # run's lowest and highest: the run is that interval. In unsigned arithmetic step + 1 is 0, 1
    # or 2 for those steps and huge for every other, so one compare finds every break.
    step = pfns[1:] - pfns[:-1]
    step += np.uint64(1)
    brk = np.flatnonzero(step > np.uint64(2))
    brk += 1
    first = np.concatenate(([0], brk))
    rstart = np.minimum.reduceat(p, first)
    rend = np.maximum.reduceat(p, first) + 1
    rlen = np.diff(first, append=n)
    order = np.argsort(rstart, kind="stable")
    s, e = rstart[order], rend[order]
    seg_start, seg_end, seg_of_run = merge_intervals(s, e, gap)
    seg_len = seg_end - seg_start
    # One whole span beats many segments when the PFNs are dense (cost model above).
    span = int(seg_end.max() - seg_start[0])
    if len(seg_start) > 1 and span <= int(seg_len.sum()) + gap * len(seg_start):
        seg_start, seg_len = seg_start[:1], np.array([span], dtype=np.int64)
        seg_of_run = np.zeros(len(s), dtype=np.int64)
    # Position of each run's lowest PFN in the concatenated buffer; a page lands at that
    # position plus its distance from the run's lowest PFN.
    run_pos_sorted = seg_offsets(seg_len)[seg_of_run] + (s - seg_start[seg_of_run])
    run_pos = np.empty_like(run_pos_sorted)
    run_pos[order] = run_pos_sorted
    index = np.repeat(run_pos - rstart, rlen)
    index += p
    return LookupPlan(seg_start.astype(np.int64), seg_len.astype(np.int64), index)


# Large folios beyond PMD THPs (file page cache in folios of up to 2 MiB on ext4 since 6.16, mTHP):
# kpageflags' ABI bits are the folio's but for COMPOUND_HEAD/TAIL (fs/proc/page.c stable_page_flags:
# the flags word, mapping and mapped state are read from the folio), and a folio is naturally
# aligned. So when the first page of a FOLIO_BLOCK-aligned block is a tail, the folio holding it
# started before the block and is at least twice its size: the whole block is that folio's, tails
# all, and one read tells the flags of its pages. When the first page is a head, a tail at the
# block's middle says the same of the rest of the block. One or two reads, not 64.
FOLIO_BLOCK = 64
FOLIO_MIN_BLOCKS = 4  # fewer candidate blocks in a lookup: not worth a round of reads
KPF_HEAD = np.uint64(1 << 15)
KPF_TAIL = np.uint64(1 << 16)


def folio_blocks(plan: LookupPlan, pfns: np.ndarray) -> np.ndarray:
    """First PFNs (int64, sorted) of the FOLIO_BLOCK-aligned blocks that hold one of `pfns` and lie
    whole inside one of the plan's read segments: those whose pages' flags a probe may tell. Pure."""
    if not len(pfns) or not len(plan.seg_start):
        return np.zeros(0, dtype=np.int64)
    blk = np.asarray(pfns, dtype=np.uint64) >> np.uint64(FOLIO_BLOCK.bit_length() - 1)
    if len(blk) > 1:  # pages come in runs: sort one element per run of equal blocks, not every page
        blk = blk[np.concatenate(([True], blk[1:] != blk[:-1]))]
    b = unique_sorted(blk).view(np.int64) * FOLIO_BLOCK
    k = np.maximum(np.searchsorted(plan.seg_start, b, side="right") - 1, 0)
    inside = (plan.seg_start[k] <= b) & (b + FOLIO_BLOCK <= plan.seg_start[k] + plan.seg_len[k])
    return b[inside]


def cut_blocks(plan: LookupPlan, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plan's segments less the given FOLIO_BLOCK-long blocks (sorted, disjoint, each inside one
    segment), as (first PFN, length, position in the plan's buffer) of the pieces left. Pure."""
    seg_end = plan.seg_start + plan.seg_len
    starts = np.sort(np.concatenate((plan.seg_start, blocks + FOLIO_BLOCK)))
    ends = np.sort(np.concatenate((blocks, seg_end)))
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    k = np.searchsorted(plan.seg_start, starts, side="right") - 1
    pos = seg_offsets(plan.seg_len)[k] + (starts - plan.seg_start[k])
    return starts, ends - starts, pos


class PfnReader:
    """Reads kpageflags and kpagecount for batches of PFNs, on two threads. Needs root.

    The reads are split into pieces and shared between the calling thread and one helper:
    the kernel's per-PFN cost dominates, and pread releases the GIL.
    """

    def __init__(self, want_flags: bool = True, want_count: bool = True) -> None:
        self.core = load_core()  # None: the pure path
        self.flags_fd = procfs.open_kpage("kpageflags") if want_flags else None
        self.count_fd = procfs.open_kpage("kpagecount") if want_count else None

    @property
    def can_flags(self) -> bool:
        return self.flags_fd is not None

    @property
    def can_count(self) -> bool:
        return self.count_fd is not None

    def lookup(self, pfns: np.ndarray, count_sel: np.ndarray | None = None, split: bool = True,
               flag_pfns: np.ndarray | None = None, folio_pfns: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(kpageflags per PFN, kpagecount per PFN of pfns[count_sel]); None for an unreadable file.

        flag_pfns, when given, are the PFNs whose kpageflags to read in place of pfns (a THP
        tail's head, whose flags the caller adapts). folio_pfns: those of the PFNs likely in large
        folios (file pages): their aligned blocks are probed first, and a block that one folio
        fills is not read page by page (see FOLIO_BLOCK). Kernel-internal bits (32+) of its pages
        other than the first read 0."""
        jobs: list[Reads] = []
        core = self.core
        plan = plan_lookup(pfns if flag_pfns is None else flag_pfns, core=core)
        fill: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if folio_pfns is not None and self.flags_fd is not None and len(folio_pfns):
            fill = self._folio_fill(plan, folio_pfns)
        # kpagecount for a subset: its own plan when the subset is small (fewer PFNs for the
        # kernel to count), the flags plan when it is most of the PFNs (no second plan).
        count_plan = plan
        if flag_pfns is not None and flag_pfns is not pfns:
            count_plan = plan_lookup(pfns if count_sel is None else pfns[count_sel], core=core)
        elif count_sel is not None and 4 * int(np.count_nonzero(count_sel)) < len(pfns):
            count_plan = plan_lookup(pfns[count_sel], core=core)
        results: list[np.ndarray | None] = []
        for fd, path, pl in ((self.flags_fd, "/proc/kpageflags", plan),
                             (self.count_fd, "/proc/kpagecount", count_plan)):
            if fd is None:
                results.append(None)
                continue
            # Not zeroed first: every byte is read (or zeroed by pread_runs past the end of RAM),
            # and np.empty reuses freed heap memory where np.zeros takes fresh pages to fault in.
            buf = np.empty(pl.total, dtype="<u8")
            if fill is not None and fd is self.flags_fd:
                jobs.append(Reads.spans(fd, path, buf, *cut_blocks(pl, fill[0]), core=core))
            else:
                jobs.append(Reads.of(fd, path, buf, pl, core))
            results.append(buf)
        _run_split(jobs, split)
        flags, counts = results
        if flags is not None:
            if fill is not None:
                # The blocks left unread: each one's first page as probed, the others from it.
                blocks, first, rest = fill
                k = np.searchsorted(plan.seg_start, blocks, side="right") - 1
                at = seg_offsets(plan.seg_len)[k] + (blocks - plan.seg_start[k])
                flags[arange_runs(at, np.full(len(at), FOLIO_BLOCK, dtype=np.int64))] = np.repeat(rest, FOLIO_BLOCK)
                flags[at] = first
            flags = flags[plan.index]
        if counts is not None:
            if count_plan is not plan:
                counts = counts[count_plan.index]
            else:
                counts = counts[plan.index if count_sel is None else plan.index[count_sel]]
        return flags, counts

    def _folio_fill(self, plan: LookupPlan, folio_pfns: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(blocks one folio fills, the flags of each one's first page, those of its other pages),
        from one or two rounds of probes; None when there are too few blocks to be worth it."""
        blocks = folio_blocks(plan, folio_pfns)
        if len(blocks) < FOLIO_MIN_BLOCKS:
            return None
        first = self._read_at(blocks)
        tail = (first & KPF_TAIL) != 0
        head = ((first & KPF_HEAD) != 0) & ~tail
        whole = tail.copy()
        if head.any():
            # A head: the block is its folio's when the middle page is a tail of the same flags.
            mid = self._read_at(blocks[head] + FOLIO_BLOCK // 2)
            same = (mid & KPF_ABI_MASK & ~KPF_TAIL) == (first[head] & KPF_ABI_MASK & ~KPF_HEAD)
            whole[head] = ((mid & KPF_TAIL) != 0) & same
        if not whole.any():
            return None
        first = first[whole]
        rest = (first & KPF_ABI_MASK & ~KPF_HEAD) | KPF_TAIL
        return blocks[whole], first, rest

    def _read_at(self, pfns: np.ndarray) -> np.ndarray:
        """kpageflags of a few sorted PFNs, one read each."""
        assert self.flags_fd is not None
        out = np.empty(len(pfns), dtype="<u8")
        Reads.spans(self.flags_fd, "/proc/kpageflags", out, pfns, np.ones(len(pfns), dtype=np.int64),
                    np.arange(len(pfns), dtype=np.int64), core=self.core).run()
        return out

    def close(self) -> None:
        procfs.close(self.flags_fd)
        procfs.close(self.count_fd)
        self.flags_fd = self.count_fd = None

    def __enter__(self) -> PfnReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SPLIT_MIN = 1 << 15  # PFNs: below this a second thread costs more than it saves


class Reads:
    """Reads of one file into one buffer, as int64 arrays (bytes): the offset in the file, and the
    position and size in the buffer, of each read. Run by the compiled core in one call without
    the GIL, or by procfs.pread_runs' loop over plain lists. A plain slotted class, as LookupPlan."""

    __slots__ = ("buf", "core", "fd", "off", "path", "pos", "size")

    def __init__(self, fd: int, path: str, buf: memoryview, off: np.ndarray, pos: np.ndarray, size: np.ndarray,
                 core: Core | None = None) -> None:
        self.fd = fd
        self.path = path
        self.buf = buf
        self.off = off
        self.pos = pos
        self.size = size
        self.core = core

    @classmethod
    def of(cls, fd: int, path: str, buf: np.ndarray, plan: LookupPlan, core: Core | None = None) -> Reads:
        """The plan's segments into buf (u64 per PFN), as reads of at most MAX_READ PFNs."""
        return cls.spans(fd, path, buf, plan.seg_start, plan.seg_len, seg_offsets(plan.seg_len), core=core)

    @classmethod
    def spans(cls, fd: int, path: str, buf: np.ndarray, start: np.ndarray, length: np.ndarray,
              pos: np.ndarray, core: Core | None = None) -> Reads:
        """Spans of `length` PFNs from `start` into buf at `pos` (u64 per PFN), as reads of at most
        MAX_READ PFNs."""
        pos = pos[:len(length)]  # seg_offsets of no segments is [0]
        if len(length) and int(length.max()) > MAX_READ:
            k = (length + MAX_READ - 1) // MAX_READ
            seg = np.repeat(np.arange(len(length)), k)
            within = (np.arange(int(k.sum())) - np.repeat(seg_offsets(k), k)) * MAX_READ
            start, length, pos = start[seg] + within, np.minimum(length[seg] - within, MAX_READ), pos[seg] + within
        i8 = np.int64
        return cls(fd, path, buf.data.cast("B"), np.multiply(start, 8, dtype=i8), np.multiply(pos, 8, dtype=i8),
                   np.multiply(length, 8, dtype=i8), core)

    @property
    def total(self) -> int:
        return int(self.size.sum())

    def cut(self, nbytes: int) -> tuple[Reads, Reads]:
        """The first nbytes (a multiple of 8) of the reads, and the rest."""
        off, pos, size = self.off, self.pos, self.size
        ends = np.cumsum(size)
        i = int(np.searchsorted(ends, nbytes, side="right"))  # the reads wholly inside the first nbytes
        acc = int(ends[i - 1]) if i else 0

        def part(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Reads:
            return Reads(self.fd, self.path, self.buf, a, b, c, self.core)

        if i == len(size) or acc == nbytes:
            return part(off[:i], pos[:i], size[:i]), part(off[i:], pos[i:], size[i:])
        k = nbytes - acc  # read i is split in two
        off2, pos2, size2 = off[i:].copy(), pos[i:].copy(), size[i:].copy()
        off2[0] += k
        pos2[0] += k
        size2[0] -= k
        size1 = size[:i + 1].copy()
        size1[i] = k
        return part(off[:i + 1], pos[:i + 1], size1), part(off2, pos2, size2)

    def run(self) -> None:
        if self.core is None:
            procfs.pread_runs(self.fd, self.buf, self.off.tolist(), self.pos.tolist(), self.size.tolist(), self.path)
            return
        try:
            self.core.pread_spans(self.fd, self.buf, self.off, self.pos, self.size)
        except OSError:
            with procfs.translate(0, self.path, started=True):
                raise


def _read_jobs(jobs: list[Reads], errors: list[BaseException]) -> None:
    try:
        for r in jobs:
            r.run()
    except BaseException as e:  # re-raised in the calling thread
        errors.append(e)


def _run_split(jobs: list[Reads], split: bool = True) -> None:
    """Run the reads on this thread and one helper, halves balanced by size."""
    sizes = [r.total for r in jobs]
    total = sum(sizes) // 8
    if total < SPLIT_MIN or not split:
        errs: list[BaseException] = []
        _read_jobs(jobs, errs)
        if errs:
            raise errs[0]
        return
    # Cut the reads so that both halves get about total/2 PFNs.
    half = total // 2 * 8
    mine: list[Reads] = []
    theirs: list[Reads] = []
    acc = 0
    for r, n in zip(jobs, sizes):
        if acc < half < acc + n:
            a, b = r.cut(half - acc)
            mine.append(a)
            theirs.append(b)
        elif acc < half:
            mine.append(r)
        else:
            theirs.append(r)
        acc += n
    errs = []
    t = threading.Thread(target=_read_jobs, args=(theirs, errs), daemon=True)
    t.start()
    _read_jobs(mine, errs)
    t.join()
    if errs:
        raise errs[0]


KPAGEFLAGS = "/proc/kpageflags"
PHYS_CHUNK = 1 << 20  # PFNs per read: 8 MiB of u64


def iter_kpageflags(start: int = 0, end: int | None = None,
                    chunk: int = PHYS_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(first PFN, kpageflags u64 array) chunks over [start, end); end None: to the end of memory.

    Reads past the last PFN are short (fs/proc/page.c kpageflags_read stops at max_pfn), so a
    short read ends the walk. Needs root (the file is 0400): AccessDenied otherwise.
    """
    fd = procfs.open_kpage("kpageflags")
    if fd is None:
        raise AccessDenied(f"permission denied: {KPAGEFLAGS} (needs root (CAP_SYS_ADMIN))", path=KPAGEFLAGS)
    try:
        pfn = start
        while end is None or pfn < end:
            n = chunk if end is None else min(chunk, end - pfn)
            buf = np.zeros(n, dtype="<u8")
            got = procfs.pread_into(fd, buf.data.cast("B"), pfn * 8, 0, KPAGEFLAGS) // 8
            if got:
                yield pfn, buf[:got]
            if got < n:
                return
            pfn += got
    finally:
        procfs.close(fd)


KPAGECGROUP = "/proc/kpagecgroup"


def lookup_cgroup(pfns: np.ndarray) -> np.ndarray | None:
    """kpagecgroup per PFN: the inode of the memory cgroup the page is charged to (0: none,
    Documentation/admin-guide/mm/pagemap.rst); None when the file cannot be read (not root,
    no CONFIG_MEMCG)."""
    fd = procfs.open_kpage("kpagecgroup")
    if fd is None:
        return None
    try:
        core = load_core()
        plan = plan_lookup(pfns, core=core)
        buf = np.zeros(plan.total, dtype="<u8")
        _run_split([Reads.of(fd, KPAGECGROUP, buf, plan, core)])
        return buf[plan.index]
    finally:
        procfs.close(fd)


# PFNs per kpagecgroup read of the whole-memory pass: small enough that the first read (not
# overlapped with anything) is short, large enough that calls cost nothing.
CGROUP_CHUNK = 1 << 18


def charged_spans(cg: np.ndarray, gap: int = PFNS_PER_CALL) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) index spans that cover the nonzero entries of `cg`, spans less than `gap`
    apart joined (a read call costs about as much as `gap` PFNs). Pure."""
    nz = np.empty(len(cg) + 2, dtype=np.int8)
    nz[0] = nz[-1] = 0
    np.not_equal(cg, 0, out=nz[1:-1], casting="unsafe")
    edges = np.flatnonzero(np.diff(nz))
    starts, ends = edges[0::2], edges[1::2]
    if len(starts) > 1:
        keep = np.r_[True, (starts[1:] - ends[:-1]) >= gap]
        starts, ends = starts[keep], np.r_[ends[:-1][keep[1:]], ends[-1:]]
    return starts, ends


def iter_kpageflags_cgroup(chunk: int = CGROUP_CHUNK) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first PFN, kpageflags, kpagecgroup) chunks over all of physical memory, where kpageflags
    is read only for the PFNs charged to some memcg (kpagecgroup != 0) and is 0 elsewhere.

    kpagecgroup is read whole, a chunk ahead on a helper thread, while this thread reads the
    chunk before's kpageflags in the few spans its charged pages make (charged_spans). Free
    and uncharged pages (half of a quiet machine) cost no kpageflags read: the pass costs
    about kpagecgroup's full read plus half of kpageflags', overlapped (the kernel's per-PFN
    work dominates; pread releases the GIL). AccessDenied without root or without kpagecgroup."""
    cfd = procfs.open_kpage("kpagecgroup")
    if cfd is None:
        raise AccessDenied(f"permission denied: {KPAGECGROUP} (needs root (CAP_SYS_ADMIN) and CONFIG_MEMCG)",
                           path=KPAGECGROUP)
    ffd = procfs.open_kpage("kpageflags")
    if ffd is None:
        procfs.close(cfd)
        raise AccessDenied(f"permission denied: {KPAGEFLAGS} (needs root (CAP_SYS_ADMIN))", path=KPAGEFLAGS)

    def read_cg(pfn: int, out: list[np.ndarray]) -> None:
        buf = np.zeros(chunk, dtype="<u8")
        try:
            got = procfs.pread_into(cfd, buf.data.cast("B"), pfn * 8, 0, KPAGECGROUP) // 8
            out.append(buf[:got])
        except BaseException as e:  # re-raised by the caller
            out.append(np.zeros(0, dtype="<u8"))
            errs.append(e)

    def start(pfn: int) -> tuple[threading.Thread, list[np.ndarray]]:
        out: list[np.ndarray] = []
        t = threading.Thread(target=read_cg, args=(pfn, out), daemon=True)
        t.start()
        return t, out

    errs: list[BaseException] = []
    pending: tuple[threading.Thread, list[np.ndarray]] | None = None
    try:
        pfn = 0
        pending = start(pfn)
        while pending is not None:
            t, out = pending
            t.join()
            pending = None
            if errs:
                raise errs[0]
            cg = out[0]
            n = len(cg)  # short at max_pfn (fs/proc/page.c): the last chunk
            if n == chunk:
                pending = start(pfn + n)
            flags = np.zeros(n, dtype="<u8")
            mv = flags.data.cast("B")
            s, e = charged_spans(cg)
            procfs.pread_many(ffd, [(int(a + pfn) * 8, mv[int(a) * 8 : int(b) * 8])
                                    for a, b in zip(s.tolist(), e.tolist())], KPAGEFLAGS)
            flags[cg == 0] = 0  # read through short gaps: keep the contract
            if n:
                yield pfn, flags, cg
            pfn += n
    finally:
        if pending is not None:
            pending[0].join()
        procfs.close(cfd)
        procfs.close(ffd)
