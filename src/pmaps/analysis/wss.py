"""Working set: which pages were accessed in an interval, per VMA, and page ages over cycles.

`measure` runs the measurement (it writes access state: see LIMITS); the rest is pure.

Three readbacks feed it (docs/time.md says what each can and cannot see):
- idle page tracking: a page is accessed when it is no longer idle (page-exact for LRU pages;
  a THP by its head page);
- DAMON (one region per resident PFN): a page is accessed when its region's nr_accesses > 0;
  passed in as `idle` like the idle bitmap (page-exact for LRU pages; a large folio as a whole);
- clear_refs 1 then PAGEMAP_SCAN/kpageflags: a page is *located* as accessed when its REFERENCED
  flag is set again (accesses the kernel mediates: read()/write(), GUP, faults through
  folio_mark_accessed) or when it became present or was swapped in during the interval. A CPU
  access to a resident page only sets the pte young bit, which no per-page interface exports
  without idle tracking: smaps' per-VMA Referenced counts those, so every VMA gets smaps' count
  and the located subset (kpageflags are read only in the VMAs smaps counted: see
  flags_where_counted). None of the three sees an access through a TLB entry the CPU kept since
  before the interval: x86 clears young bits without a flush (kernel/clear_refs.py).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, overload

import numpy as np

from ..collector import Options, Process
from ..collector.parallel import on_thread
from ..errors import NoSuchProcess, PmapsError, Unsupported, ZombieProcess
from ..kernel import caps as capsmod
from ..kernel import damon as damonmod
from ..kernel.clear_refs import CLEAR_REFERENCED, clear_refs
from ..kernel.idle import IdleBitmap
from ..kernel.kpage import KPF
from ..kernel.maps import Vma, VmaTable, read_table
from ..kernel.pagemap import CAT_HUGE, CAT_PFNZERO, CAT_PRESENT, PM_PRESENT, TASK_SIZE_MAX
from ..kernel.smaps import decode_smaps_listed, smaps_pieces
from ..model import Pages, inside_vmas
from ..numeric import PAGE_SHIFT, PAGE_SIZE, arange_runs, consecutive_runs, unique_sorted

U64 = np.uint64
T = TypeVar("T")


def _kbit(p: Pages, name: str) -> np.ndarray:
    if p.kflags is None:
        return np.zeros(len(p), dtype=bool)
    return ((p.kflags >> U64(KPF[name])) & U64(1)).astype(bool)


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(start, value) columns of pieces, joined."""
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _zero(p: Pages) -> np.ndarray:
    """The shared zero page (or huge zero page), by kpageflags or by PAGEMAP_SCAN's category."""
    return _kbit(p, "zero_page") | ((p.cat & CAT_PFNZERO) != 0)


def located(before: Pages, after: Pages, *, idle: np.ndarray | None = None,
            was: np.ndarray | None = None) -> np.ndarray:
    """Bool per page of `after`: accessed during the interval, as far as per-page signals tell.

    `idle` (per page of after, from the idle bitmap) replaces the REFERENCED test when given;
    `was`: was_resident(before, after), when already known.
    """
    pres = after.present & ~_zero(after)
    was_res = was_resident(before, after) if was is None else was
    touched = ~idle if idle is not None else _kbit(after, "referenced")
    return pres & (touched | ~was_res)


def was_resident(before: Pages, after: Pages) -> np.ndarray:
    """Bool per page of `after`: resident at the start (absent or swapped then: faulted in since)."""
    idx = np.searchsorted(before.vpn, after.vpn)
    idx_c = np.minimum(idx, max(len(before) - 1, 0))
    was = (idx < len(before)) & (before.vpn[idx_c] == after.vpn) if len(before) else np.zeros(len(after), bool)
    return was & before.present[idx_c] if len(before) else was


def vma_bounds(table: VmaTable, pages: Pages) -> np.ndarray:
    """[lo, hi) indexes of each VMA's pages among `pages` (sorted), as per_vma takes them."""
    return np.stack([np.searchsorted(pages.vpn, table.start_page), np.searchsorted(pages.vpn, table.end_page)],
                    axis=1)


def runs(vpn: np.ndarray, sel: np.ndarray, cuts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first vpn, pages) of the runs of consecutive selected vpns (vpn sorted), also cut where a
    vpn is in `cuts` (e.g. the first pages of VMAs). Pure, vectorised."""
    v = vpn[sel].astype(np.int64)
    extra = None
    if cuts is not None and len(v) and len(cuts):
        # Membership by binary search in the sorted cuts (np.isin sorts both sides together).
        c = np.sort(np.asarray(cuts, dtype=np.int64), kind="stable")  # already sorted, as a rule: timsort's best case
        extra = c[np.minimum(np.searchsorted(c, v[1:]), len(c) - 1)] == v[1:]
    first, n = consecutive_runs(v, extra)
    return v[first], n


def start_pages(proc: Process, method: str) -> Pages:
    """The pages resident at the start of the first cycle. Idle tracking and DAMON mark their
    PFNs: pagemap (no kpageflags). clear_refs needs only which pages were resident, which
    PAGEMAP_SCAN's regions say without a pagemap entry per page (a scan of 65,000 VMAs' 134,000
    pages: ~20 ms, pagemap ~25 ms more), nor maps (`measure` opens the process without it): those
    Pages carry no PFN."""
    if method == "clear_refs" and proc.scanning:
        return scan_pages(proc, CAT_PRESENT)
    if not len(proc.table):
        proc.refresh_table()
    return proc.pages(lookup=False)


def scan_pages(proc: Process, returns: int, table: VmaTable | None = None) -> Pages:
    """The present pages of the table's VMAs (without one: of the whole address space) from
    PAGEMAP_SCAN's regions, `returns` the categories they carry (e.g. CAT_PFNZERO); no pagemap
    entry read: Pages without PFNs."""
    if table is not None and not len(table):
        return Pages.empty()
    lo, hi = (0, TASK_SIZE_MAX) if table is None else (int(table.start[0]), int(table.end[-1]))
    regs = proc.regions(lo, hi, returns=returns | CAT_PRESENT)
    regs = regs[(regs[:, 2] & U64(CAT_PRESENT)) != 0]
    first = regs[:, 0] >> U64(PAGE_SHIFT)
    lens = ((regs[:, 1] >> U64(PAGE_SHIFT)) - first).astype(np.int64)
    vpn = arange_runs(first, lens)
    n = len(vpn)
    pages = Pages(vpn, np.full(n, 1 << PM_PRESENT, dtype=U64), np.repeat(regs[:, 2].astype(np.uint16), lens))
    if table is None:
        return pages
    inside = inside_vmas(vpn, table)  # a scan spans the gaps between VMAs: one grown into them since maps
    return pages if inside.all() else pages.take(inside)


def flags_where_counted(proc: Process, after: Pages, table: VmaTable, counted: np.ndarray) -> None:
    """Fill after.kflags (0 where not filled, made when None) with the kpageflags of the present
    pages of the VMAs starting at `counted` (those whose smaps Referenced is not 0).

    That is every page `located` can find by its REFERENCED flag. clear_refs resets, and smaps'
    Referenced counts, the same pages: those vm_normal_page() finds behind a present pte or PMD
    (fs/proc/task_mmu.c, 6.x: not the zero page, not VM_PFNMAP or special ptes, not hugetlb,
    which neither walk resets or counts). Where smaps counted 0, none of them had PG_referenced (or
    a young pte or folio) when smaps read it: a flag seen there later was set after the interval,
    or never reset. Pages that became present are located without flags. An idle process of
    65,000 VMAs: 26 VMAs' pages looked up, not 134,000 pages (pagemap and kpageflags, 0.1 s)."""
    if after.kflags is None:
        after.kflags = np.zeros(len(after), dtype=U64)
    if not (len(counted) and len(after) and len(table) and proc.known.flags):
        return
    k = np.searchsorted(table.start, counted)
    k = unique_sorted(k[(k < len(table)) & (table.start[np.minimum(k, len(table) - 1)] == counted)])
    lo = np.searchsorted(after.vpn, table.start_page[k])
    hi = np.searchsorted(after.vpn, table.end_page[k])
    edge = np.zeros(len(after) + 1, dtype=np.int64)
    np.add.at(edge, lo, 1)
    np.add.at(edge, hi, -1)
    sel = (np.cumsum(edge[:-1]) > 0) & ~_zero(after)
    if not sel.any():
        return
    v, cat = after.vpn[sel], after.cat[sel]
    first, n = consecutive_runs(v, cat[1:] != cat[:-1])
    s = v[first]
    sub = proc.region_pages(np.stack([s, s + n.astype(U64), cat[first].astype(U64)], axis=1))
    if sub.kflags is None or not len(sub):
        return
    idx = np.minimum(np.searchsorted(after.vpn, sub.vpn), len(after) - 1)
    ok = (after.vpn[idx] == sub.vpn) & sub.present
    after.kflags[idx[ok]] = sub.kflags[ok]


def table_once(proc: Process) -> VmaTable:
    """The VMAs of one maps read, made the process's table: clear_refs_end checks it against smaps'
    own listing instead of a second maps read (refresh_table reads until two agree: 20-45 ms more at
    65,000 VMAs). A read whose VMAs are out of order or overlap (the target changed them while it
    was read) is refresh_table's instead."""
    table = read_table(proc.pid, started=True)
    if not bool((table.end[:-1] <= table.start[1:]).all()):
        return proc.refresh_table()
    proc.table = table
    return table


def clear_refs_end(proc: Process, table: VmaTable, counted: Iterator[tuple[np.ndarray, np.ndarray, int]],
                   meanwhile: Callable[[VmaTable, Pages], T]
                   ) -> tuple[VmaTable, Pages, tuple[np.ndarray, np.ndarray], T]:
    """The end of a clear_refs cycle: (VMAs, pages now, smaps' non-zero Referenced as (start, bytes),
    meanwhile(VMAs, pages)), from `counted` (smaps' pieces decoded, read meanwhile on a thread)
    and the pages of `table` read here. With PAGEMAP_SCAN, which pages are present from the scan,
    and kpageflags only in the VMAs smaps counted, each piece's as soon as it is decoded (while the
    rest of smaps is read). `meanwhile` is the caller's work that needs no smaps, done before its
    first piece is taken (off the path after smaps' walk ends).

    The table is of one maps read (table_once): when smaps lists another number of VMAs, or counts
    a VMA that maps did not list, the target changed its VMAs between the two reads, and the pages
    are read again for refresh_table's (two maps reads that agree), as before one read was trusted.
    """
    def pages(t: VmaTable) -> Pages:
        if not proc.scanning:
            return proc.pages()
        got = scan_pages(proc, CAT_PFNZERO | CAT_HUGE, t)
        got.kflags = np.zeros(len(got), dtype=U64)
        return got

    after = pages(table)
    early = meanwhile(table, after)
    parts = []
    listed = 0
    for starts, values, n in counted:
        parts.append((starts, values))
        listed += n
        if proc.scanning:
            flags_where_counted(proc, after, table, starts)
    ref = _joined(parts)  # the VMAs smaps counted: per_vma counts the others 0
    if listed != len(table) or not _listed_in(ref[0], table):
        table = proc.refresh_table()
        after = pages(table)
        if proc.scanning:
            flags_where_counted(proc, after, table, ref[0])
        early = meanwhile(table, after)
    return table, after, ref, early


def _listed_in(starts: np.ndarray, table: VmaTable) -> bool:
    """Is every start that of a VMA of the table (its starts sorted)?"""
    if not len(starts):
        return True
    if not len(table):
        return False
    k = np.minimum(np.searchsorted(table.start, starts), len(table) - 1)
    return bool((table.start[k] == starts).all())


@dataclass
class VmaWss:
    vma: Vma
    resident: int  # pages resident at the end of the interval
    located: int  # pages known accessed, page by page
    counted: int | None  # pages accessed per smaps Referenced (clear_refs method), None with idle tracking

    @property
    def accessed(self) -> int:
        return max(self.located, self.counted or 0)


class WssRows(Sequence[VmaWss]):
    """The rows per VMA as columns, one element per VMA of `table`: pages resident, located and
    counted (None without smaps' counts). A sequence of VmaWss made on demand: a process of
    65,000 VMAs is a few arrays, not 65,000 objects."""

    def __init__(self, table: VmaTable, resident: np.ndarray, located: np.ndarray,
                 counted: np.ndarray | None) -> None:
        self.table, self.resident, self.located, self.counted = table, resident, located, counted

    @classmethod
    def of(cls, rows: Sequence[VmaWss]) -> WssRows:
        """rows as columns (the same object when they already are)."""
        if isinstance(rows, WssRows):
            return rows
        n = len(rows)
        counted = None
        if any(r.counted is not None for r in rows):
            counted = np.fromiter((r.counted or 0 for r in rows), dtype=np.int64, count=n)
        return cls(VmaTable.of_vmas([r.vma for r in rows]), np.fromiter((r.resident for r in rows), np.int64, n),
                   np.fromiter((r.located for r in rows), np.int64, n), counted)

    @property
    def accessed(self) -> np.ndarray:
        return self.located if self.counted is None else np.maximum(self.located, self.counted)

    def __len__(self) -> int:
        return len(self.resident)

    @overload
    def __getitem__(self, i: int) -> VmaWss: ...

    @overload
    def __getitem__(self, i: slice) -> list[VmaWss]: ...

    def __getitem__(self, i: int | slice) -> VmaWss | list[VmaWss]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        counted = None if self.counted is None else int(self.counted[i])
        return VmaWss(self.table.vma(i), int(self.resident[i]), int(self.located[i]), counted)

    def take(self, idx: np.ndarray) -> WssRows:
        """The rows at these indexes."""
        return WssRows(self.table.take(idx), self.resident[idx], self.located[idx],
                       None if self.counted is None else self.counted[idx])

    def __iter__(self) -> Iterator[VmaWss]:
        counted = [None] * len(self) if self.counted is None else self.counted.tolist()
        return map(VmaWss, self.table.vmas, self.resident.tolist(), self.located.tolist(), counted)


def per_vma(table: VmaTable, bounds: np.ndarray, acc: np.ndarray, pres: np.ndarray,
            smaps_ref: tuple[np.ndarray, np.ndarray] | None) -> WssRows:
    """Rows per VMA from per-page bools (bounds: [lo, hi) page indexes per VMA); smaps_ref: (VMA
    start, bytes) as smaps lists them (a VMA it does not list counts 0; of a start listed twice,
    the last)."""
    ca = np.concatenate(([0], np.cumsum(acc, dtype=np.int64)))
    cp = np.concatenate(([0], np.cumsum(pres, dtype=np.int64)))
    lo, hi = bounds[:, 0], bounds[:, 1]
    counted = None
    if smaps_ref is not None:
        counted = np.zeros(len(table), dtype=np.int64)
        keys, vals = smaps_ref
        if len(keys) and len(table):
            order = np.argsort(keys, kind="stable")
            keys, vals = keys[order], vals[order]
            k = np.maximum(np.searchsorted(keys, table.start, side="right") - 1, 0)
            counted = np.where(keys[k] == table.start, vals[k] // PAGE_SIZE, 0).astype(np.int64)
    return WssRows(table, cp[hi] - cp[lo], ca[hi] - ca[lo], counted)


@dataclass
class Ages:
    """Per page, the last cycle (0-based) it was seen accessed; -1 never."""

    vpn: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=U64))
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cycles: int = 0

    def update(self, vpn: np.ndarray, accessed: np.ndarray) -> None:
        """One more cycle: vpn = the resident pages now (sorted), accessed = their bools."""
        idx = np.searchsorted(self.vpn, vpn)
        idx_c = np.minimum(idx, max(len(self.vpn) - 1, 0))
        known = (idx < len(self.vpn)) & (self.vpn[idx_c] == vpn) if len(self.vpn) else np.zeros(len(vpn), bool)
        prev = np.where(known, self.last[idx_c] if len(self.vpn) else -1, -1)
        self.vpn = vpn.copy()
        self.last = np.where(accessed, self.cycles, prev).astype(np.int64)
        self.cycles += 1

    def histogram(self) -> list[tuple[str, int]]:
        """(age label, pages): age k = last accessed k intervals ago (1 = in the last one)."""
        age = np.where(self.last >= 0, self.cycles - self.last, 0)
        counts = np.bincount(age, minlength=self.cycles + 1)
        rows = [(str(k), int(counts[k])) for k in range(1, self.cycles + 1)]
        rows.append((f"never (>{self.cycles})", int(counts[0])))
        return rows


# -- the measurement -------------------------------------------------------------------------

# auto picks DAMON only for intervals this long: each DAMON cycle also writes one sysfs region per
# resident page and its samples stretch with the region count (measured: a 4200-page process took
# 0.7 s for a 0.3 s interval), so shorter cycles would mostly measure overhead. method="damon" forces it.
DAMON_AUTO_MIN_INTERVAL = 1.0
LIMITS = {
    "idle": [
        "idle page tracking: page-exact for pages on the LRU; a THP is tracked by its head page;",
        "pages outside the LRU (zero page, kernel-owned) are never reported idle; a page mapped or read by",
        "other processes too (a library, shared memory) is seen accessed when any of them touched it.",
    ],
    "damon": [
        "DAMON (paddr operations, one region per resident physical page, min = max regions so none merge or split)",
        "checks and clears the pte young bits of each page every 5 ms: page-exact for CPU and kernel accesses to",
        "pages on the LRU; a large folio is checked as a whole; a page mapped by other processes too is seen",
        "accessed when any of them touched it; a page moved to another PFN during the interval is not seen.",
        f"Above {damonmod.MAX_REGIONS} resident pages, regions group adjacent PFNs and are only sampled.",
        "Side effect: like idle tracking, the pages' young bits are cleared (reclaim sees them colder).",
    ],
    "clear_refs": [
        "clear_refs 1 clears the pte young bits and PG_referenced of every page of the process: reclaim then",
        "sees its pages as cold until touched again (nothing can set them back). It holds the process's mmap_lock",
        "for writing while it walks the page tables (on a 2-vCPU VM: 33 ms for 65,000 VMAs, 65 ms for 8 GiB): its",
        "mmap, munmap and page faults wait that long, once a cycle.",
        "ACCESSED per VMA is smaps' Referenced (young ptes), exactly; x86 clears young bits without flushing TLBs,",
        "so a CPU access through a translation cached since before the interval (a page used just before it)",
        "sets none and is not counted until the TLB lets the entry go. LOCATED is the part known page by",
        "page: pages faulted in or swapped in since, and pages whose REFERENCED flag the kernel set again",
        "(read()/write(), GUP, faults); a CPU access to a resident page sets only the pte young bit, which",
        "no per-page interface exports without idle page tracking (CONFIG_IDLE_PAGE_TRACKING) or soft-dirty",
        "(CONFIG_MEM_SOFT_DIRTY, writes only). A large folio is referenced as a whole. Page ages count",
        "located accesses only. A page other processes map or read too (a library, shared memory) counts",
        "as accessed when any of them set its folio's referenced or young flag (read() of the file, DAMON's",
        "scans): those flags are the folio's, shared by every process that maps it.",
    ],
}


def choose_method(requested: str, interval: float, caps: capsmod.Caps) -> str:
    """The method to use ("auto": idle tracking, else DAMON for long intervals, else clear_refs);
    Unsupported when a requested method cannot run here."""
    method = requested
    if method == "auto":
        if caps.idle_tracking and caps.sys_admin:
            method = "idle"
        elif interval >= DAMON_AUTO_MIN_INTERVAL and caps.sys_admin and damonmod.usable() is None:
            method = "damon"
        else:
            method = "clear_refs"
    if method == "idle" and not (caps.idle_tracking and caps.sys_admin):
        raise Unsupported("idle page tracking is unavailable (no /sys/kernel/mm/page_idle/bitmap, or not root)")
    if method == "damon":
        why = None if caps.sys_admin else "DAMON needs root (CAP_SYS_ADMIN: PFNs and /sys/kernel/mm/damon)"
        why = why or damonmod.usable()
        if why is not None:
            raise Unsupported(why)
    return method


@dataclass
class WssResult:
    """What `measure` found: per VMA rows of the last cycle, per-cycle totals, page ages."""

    pid: int
    comm: str
    method: str
    interval: float
    rows: Sequence[VmaWss] = field(default_factory=list)  # a WssRows from measure()
    cycles: list[dict[str, int]] = field(default_factory=list)  # pages: resident, accessed, located
    ages: list[tuple[str, int]] = field(default_factory=list)
    runs: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    intervals: list[float] = field(default_factory=list)  # each cycle's seconds: `interval`, or stretched by `pace`
    interrupted: bool = False  # Ctrl-C / SIGTERM: the completed cycles are kept
    ended: PmapsError | None = None  # the target exited after at least one cycle

    @property
    def limits(self) -> list[str]:
        return LIMITS[self.method]


def totals(rows: Sequence[VmaWss]) -> dict[str, int]:
    if isinstance(rows, WssRows):
        return {"resident": int(rows.resident.sum()), "accessed": int(rows.accessed.sum()),
                "located": int(rows.located.sum())}
    return {"resident": sum(r.resident for r in rows), "accessed": sum(r.accessed for r in rows),
            "located": sum(r.located for r in rows)}


def measure(pid: int, method: str = "auto", interval: float = 1.0, cycles: int = 1, caps: capsmod.Caps | None = None,
            note: Callable[[str], None] | None = None, pace: Callable[[float], float] | None = None) -> WssResult:
    """Measure the working set of `pid` over `cycles` intervals. A KeyboardInterrupt ends it after
    the current cycle (result.interrupted); notes (one line each) go to `note`.

    `pace` (the CLI's --max-cpu) maps the CPU seconds of the last cycle's work (the first
    cycle: of the initial snapshot) to the next cycle's interval, e.g. stretched to keep a
    CPU budget; the intervals used are in result.intervals."""
    caps = caps or capsmod.probe()
    say = note or (lambda _msg: None)
    chosen = choose_method(method, interval, caps)
    chose = ""  # said once the process is read: not before an error about it
    if method == "auto" and chosen == "clear_refs":
        why = ("not root" if not caps.sys_admin else
               damonmod.usable() or f"DAMON is used for intervals of {DAMON_AUTO_MIN_INTERVAL:g} s or more")
        chose = (f"method auto: no idle page tracking here and no DAMON ({why}): using clear_refs, which resets the "
                 "referenced state reclaim uses (see the limits below)")
    method = chosen
    res = WssResult(pid, "", method, interval)
    ages = Ages()
    bitmap: IdleBitmap | None = None
    try:
        # No kpagecount: nothing here needs map counts (nor the observer correction they carry).
        # clear_refs: maps is first read at the end of the interval, while smaps is read (start_pages).
        opts = Options(counts=False, maps=method != "clear_refs")
        with Process(pid, opts, caps) as proc, contextlib.ExitStack() as stack:
            res.comm = proc.comm
            c0 = time.process_time()  # the process's CPU, all threads: the budget counts them all
            # The start of the first cycle: which pages are resident (and their PFNs, to mark idle);
            # each later cycle starts from the end of the one before.
            before = start_pages(proc, method)
            cost = time.process_time() - c0
            if chose:
                say(chose)
            if method == "idle":
                bitmap = stack.enter_context(contextlib.closing(IdleBitmap.open(write=True)))
            dm = stack.enter_context(damonmod.Damon(pid)) if method == "damon" else None
            for c in range(cycles):
                window = interval if pace is None else max(interval, pace(cost))
                if window > interval and not any(w > interval for w in res.intervals):
                    say(f"a cycle costs {cost * 1000:.0f} ms of CPU: to keep the CPU budget, cycles last "
                        f"{window:.3g}s instead of {interval:g}s")
                c0 = time.process_time()
                tried = None
                if bitmap is not None:
                    bitmap.mark_idle(before.pfn[before.present])
                elif dm is not None:
                    pres = before.present & (before.pfn != 0)
                    first, end, group = damonmod.page_regions(np.unique(before.pfn[pres]))
                    if group > 1 and c == 0:
                        say(f"{int(pres.sum())} resident pages: DAMON regions of {group} adjacent PFNs, "
                            "accesses are sampled per region, not page-exact")
                    tried = dm.sample(first, end, window, damonmod.SAMPLE_US)  # takes `window`
                else:
                    clear_refs(pid, CLEAR_REFERENCED)
                if tried is None:
                    time.sleep(window)
                idle = None
                ref = None

                def early(t: VmaTable, a: Pages, before: Pages = before) -> tuple[np.ndarray, np.ndarray]:
                    return was_resident(before, a), vma_bounds(t, a)  # what needs no smaps

                if method == "clear_refs":
                    # smaps' walk (the kernel's time, as long as `cat smaps`: it lets go of the GIL) on
                    # a thread while maps and the pages are read here.
                    # The pieces are decoded here, not on the reading thread: a decode there
                    # held up the next read (smaps 0.24 s instead of cat's 0.18 at 65,000 VMAs).
                    counted = (decode_smaps_listed(piece, "Referenced")
                               for piece in on_thread(smaps_pieces(pid, started=True)))
                    table, after, ref, (was, bounds) = clear_refs_end(proc, table_once(proc), counted, early)
                else:
                    table = proc.refresh_table()
                    after = proc.pages()
                    was, bounds = early(table, after)
                if tried is not None:
                    idle = ~damonmod.accessed_pages(after.pfn, tried)
                elif bitmap is not None:
                    idle = np.zeros(len(after), dtype=bool)
                    pres = after.present
                    idle[pres] = bitmap.read_idle(after.pfn[pres])
                acc = located(before, after, idle=idle, was=was)
                # Resident as smaps counts it: the zero page is not (vm_normal_page() is NULL for it).
                pres = after.present & ~_zero(after)
                res.rows = per_vma(table, bounds, acc, pres, ref)
                ages.update(after.vpn[pres], acc[pres])
                res.runs = runs(after.vpn, acc, table.start_page)
                res.cycles.append(totals(res.rows))
                res.intervals.append(window)
                before = after
                cost = time.process_time() - c0
    except KeyboardInterrupt:
        res.interrupted = True
    except (NoSuchProcess, ZombieProcess) as e:
        if not res.cycles:
            raise
        # The target exited in a later cycle: what the completed cycles measured still stands.
        res.ended = e
    res.ages = ages.histogram() if res.cycles else []
    return res
