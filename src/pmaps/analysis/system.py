"""Footprints of every process of a SystemScan, the way /proc/PID/smaps_rollup adds them. Pure.

The per-page rules are the footprint engine's (footprint.py); this module adds what only a scan of
many processes can tell:
- SwapPss: every reference to a private swap entry is a swap pte in some page table, so counting
  equal swap entries over the scanned mms gives the entry's count, exactly when every holder is in
  the scan (see docs/footprints.md).
- Processes sharing one mm (CLONE_VM without CLONE_THREAD, e.g. vfork) each show the whole mm, as
  their smaps_rollup does; totals and groups count every mm once (see `mm_reps`). Threads are not
  listed in /proc at all (only thread group leaders are), so they are never counted twice.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF
from ..kernel.maps import PAGE_SIZE, Vma, VmaTable
from ..model import Fixed, Ident, Known, Pages, PageSource, ProcRec, SystemScan
from ..numeric import run_bounds, unique_sorted
from .footprint import PSS_SHIFT, Facts, Figures, Prefix, figures, finish, vma_columns

U64 = np.uint64
# Byte figures of a row, in output order.
FIGURES = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "anon_thp", "ksm", "shared_hugetlb",
           "private_hugetlb")
MM_SAMPLE = 16  # exclusive pages compared to prove two pids share an mm
# Each figure from smaps_rollup's fields (bytes), and whether it is fixed point (PSS) or pages.
ROLLUP_FIELDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "rss": (("Rss",), False), "pss": (("Pss",), True), "uss": (("Private_Clean", "Private_Dirty"), False),
    "shared": (("Shared_Clean", "Shared_Dirty"), False), "swap": (("Swap",), False),
    "swap_pss": (("SwapPss",), True), "anon_thp": (("AnonHugePages",), False), "ksm": (("KSM",), False),
    "shared_hugetlb": (("Shared_Hugetlb",), False), "private_hugetlb": (("Private_Hugetlb",), False)}
SOURCE_PAGES = "pages"
SOURCE_ROLLUP = "smaps_rollup"


def _kbit(kflags: np.ndarray, name: str) -> np.ndarray:
    return (kflags >> U64(KPF[name]) & U64(1)).astype(bool)


def mm_reps(scan: SystemScan) -> np.ndarray:
    """For each process, the index of the first process sharing its mm (itself when alone).

    Sound test: a page mapped exactly once (pagemap's exclusive bit: mapcount 1) sits in one page
    table, so if it shows in two pids' pagemaps they read the same page tables: one mm. Only pids
    with identical maps are compared (pids sharing an mm print the same maps). A pid with no
    exclusive page cannot be proven to share, and stays on its own.
    """
    n = len(scan.procs)
    reps = np.arange(n)
    if not scan.known.pfn:
        return reps
    pm = scan.pages.pm
    for members in _same_maps(scan.procs):
        if len(members) < 2:
            continue
        excl: dict[int, np.ndarray] = {}
        for i in members:
            p = scan.procs[i]
            e = pm[p.lo:p.hi]
            # (Not a PMD-mapped page: its bit is its THP head page's, collector/lookup.py.)
            sel = pmb.present(e) & pmb.bit(e, pmb.PM_EXCLUSIVE) & ((scan.pages.cat[p.lo:p.hi] & pmb.CAT_HUGE) == 0)
            if scan.pages.kflags is not None:
                sel &= ~_kbit(scan.pages.kflags[p.lo:p.hi], "zero_page")
            pfns = e[sel] & pmb.PM_PFN_MASK
            if p.fixed is not None:  # its fixed pages are all exclusive, present and not the zero page
                pfns = np.concatenate((pfns, p.fixed.source.pm[p.fixed.which] & pmb.PM_PFN_MASK))
            excl[i] = np.sort(pfns)
        found: list[int] = []
        for i in members:
            mine = excl[i][:MM_SAMPLE]
            for r in found:
                theirs = excl[r]
                if len(mine) and len(theirs):
                    pos = np.minimum(np.searchsorted(theirs, mine), len(theirs) - 1)
                    if (theirs[pos] == mine).all():
                        reps[i] = r
                        break
            else:
                found.append(i)
    return reps


def _same_maps(procs: list[ProcRec]) -> list[list[int]]:
    """Indexes of the processes with identical VMAs (every field), in groups of two or more, each in
    scan order, the groups in the order of their first member. Told apart by their address columns
    first: only processes with the same bounds (a few, forked ones) have their Vma objects compared."""
    by_bounds: dict[bytes, list[int]] = {}
    for i, p in enumerate(procs):
        t = p.table
        by_bounds.setdefault(t.start.tobytes() + b"/" + t.end.tobytes(), []).append(i)
    out: list[list[int]] = []
    for same in by_bounds.values():
        if len(same) < 2:
            continue
        by_maps: dict[tuple, list[int]] = {}
        for i in same:
            by_maps.setdefault(tuple(procs[i].vmas), []).append(i)
        out += [m for m in by_maps.values() if len(m) > 1]
    return sorted(out, key=lambda m: m[0])


@dataclass
class ScanFigures:
    """The engine's per-page figures for a whole scan, summable at process and VMA boundaries."""

    figs: Figures
    prefix: Prefix
    rollup: list[dict[str, int]]  # raw sums of each of scan.rollups (the engine's units)
    fixed: list[dict[str, int] | None] | None = None  # per process: the raw sums of its fixed pages

    @property
    def unknown(self) -> set[str]:
        return self.figs.unknown

    def between(self, lo: int, hi: int) -> dict[str, int]:
        """Raw sums of the scan's pages [lo, hi) (a VMA's, or a process's without its fixed pages)."""
        return self.prefix.between(lo, hi)

    def process(self, i: int, p: ProcRec) -> dict[str, int]:
        """Raw sums of all the pages of scan.procs[i] (p), its fixed ones included."""
        out = self.prefix.between(p.lo, p.hi)
        more = self.fixed[i] if self.fixed is not None else None
        if more is not None:
            for k, v in more.items():
                out[k] = out.get(k, 0) + v
        return out


MoreColumns = Callable[[Pages, Known], dict[str, np.ndarray]]


def page_figures(scan: SystemScan, reps: np.ndarray, keys: tuple[str, ...] = FIGURES,
                 more: MoreColumns | None = None, vmas: bool = True) -> ScanFigures:
    """Each page's contribution to every figure, through the footprint engine (plus the caller's
    `more` per-page columns, a function of a page's pagemap entry, categories and kpageflags,
    summed the same way), readable at process and VMA bounds (at process bounds only with
    vmas=False: what process and group rows read, and fewer runs for a process of many VMAs).

    Pages in one run of equal facts (state word, map count, PMD mapping, swap sharing, and with
    `more` the whole kpageflags word) inside one VMA contribute equally: the engine runs once per
    run, weighted by its length (as for a sample's ranges). An 8 GiB process of a few states is a
    few hundred runs, not two million pages; the sums are the same."""
    pages, known = scan.pages, scan.known
    share = _swap_share(scan, reps)
    pmd = _pmd(pages, known, scan)
    facts = Facts.of_pages(pages, known, share, pmd)
    bounds = _bounds(scan, vmas)
    fixed = [None if p.fixed is None else _fixed_sums(p.fixed, known, keys, more) for p in scan.procs]
    out = _run_figures(pages, facts, bounds, keys, more)
    out.rollup, out.fixed = _rollup_sums(scan, keys), fixed if any(f is not None for f in fixed) else None
    return out


def _bounds(scan: SystemScan, vmas: bool) -> np.ndarray:
    """The sorted distinct page indexes where page_figures' sums are read: 0, the number of pages,
    each process's [lo, hi) and (vmas) each VMA's. Laid out in address order (each VMA's lo then hi,
    process after process) they are already sorted when the VMAs are (one maps read lists them so):
    one pass checks it instead of a sort of 130,000 for a process of 65,000 VMAs."""
    edges = [np.array([0], dtype=np.int64)]
    for p in scan.procs:
        edges.append(np.array([p.lo], dtype=np.int64))
        if vmas:
            edges.append(np.column_stack((p.vma_lo, p.vma_hi)).ravel().astype(np.int64, copy=False))
        edges.append(np.array([p.hi], dtype=np.int64))
    edges.append(np.array([len(scan.pages)], dtype=np.int64))
    x = np.concatenate(edges)
    if len(x) < 2 or not bool((x[1:] >= x[:-1]).all()):
        return unique_sorted(x)
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _run_figures(pages: Pages, facts: Facts, bounds: np.ndarray, keys: tuple[str, ...],
                 more: MoreColumns | None) -> ScanFigures:
    """page_figures' engine run over runs of equal facts that never cross `bounds` (the sorted
    page indexes, 0 and len(pages) included, where sums are read); rollup sums left empty."""
    known, n = facts.known, len(pages)
    if n < 2:
        figs = figures(facts, keys)
        figs.cols.update(more(pages, known) if more else {})
        return ScanFigures(figs, figs.prefix(bounds), [])
    brk = (facts.state[1:] != facts.state[:-1]) | (facts.mapcount[1:] != facts.mapcount[:-1])
    kf = pages.kflags if more is not None and known.flags else None
    for col in (facts.pmd, facts.swap_share, facts.shmem_swap, kf):
        if col is not None:
            brk |= col[1:] != col[:-1]
    if more is not None and kf is None:  # without kpageflags `more` reads pagemap's bits
        top = pmb.top_byte(pages.pm)
        brk |= top[1:] != top[:-1]
    inner = bounds[(bounds > 0) & (bounds < n)]
    brk[inner - 1] = True  # a run never crosses a process or VMA boundary
    first, length = run_bounds(brk)

    def at(col: np.ndarray | None) -> np.ndarray | None:
        return None if col is None else col[first]

    runs = Facts(facts.state[first], facts.mapcount[first], known, length.astype(np.int64), at(facts.pmd),
                 at(facts.swap_share), at(facts.shmem_swap))
    figs = figures(runs, keys)
    if more is not None:
        figs.cols.update({k: v * length for k, v in more(pages.take(first), known).items()})
    # Bounds are run starts (or the end): the run index of each, and the prefix read by page index.
    rb = np.searchsorted(first, bounds)
    pre = figs.prefix(rb)
    pre.at = bounds.astype(np.int64)  # one to one with rb (both sorted and unique)
    return ScanFigures(figs, pre, [])


def _fixed_sums(fixed: Fixed, known: Known, keys: tuple[str, ...], more: MoreColumns | None) -> dict[str, int]:
    """Raw sums of a process's fixed pages (model.Fixed: present, mapped once, not swapped), made
    once for these facts and figures and kept with them while the scan cache keeps them."""
    memo_key = ("sums", known, keys, more)
    got = fixed.memo.get(memo_key)
    if got is None:
        pages = fixed.pages()
        n = len(pages)
        got = _run_figures(pages, Facts.of_pages(pages, known), unique_sorted(np.array([0, n], dtype=np.int64)), keys,
                           more).between(0, n)
        fixed.memo[memo_key] = got
    return dict(got)  # type: ignore[call-overload]


def _rollup_sums(scan: SystemScan, keys: tuple[str, ...]) -> list[dict[str, int]]:
    """Raw sums of the processes read from smaps_rollup, with pmaps' own share of the pages it maps
    too recomputed by the engine without pmaps (the same rule the page-level path applies): the
    engine runs once per PFN pmaps maps (SystemScan.observed), and each process adds the change
    of each of its pages there (observed_at), a column at a time."""
    read = [r for r in scan.rollups if r.sums is None]
    cols: dict[str, np.ndarray] = {}
    for k in keys:
        names, fixed = ROLLUP_FIELDS.get(k, ((), False))
        col = np.array([sum(r.fields.get(n, 0) for n in names) for r in read], dtype=np.int64)
        cols[k] = col << PSS_SHIFT if fixed else col // PAGE_SIZE
    seen, mine, at = scan.observed, scan.observed_mine, scan.observed_at
    if seen is not None and mine is not None and at is not None and seen.kcount is not None and len(at):
        known = Known(pfn=True, flags=seen.kflags is not None, count=True)
        no_pmd = np.zeros(len(seen), dtype=bool)  # small file mappings; a PMD-mapped file THP is not anon_thp anyway
        raw = figures(Facts.of_pages(seen, known, pmd=no_pmd), keys)
        kc = seen.kcount.astype(np.int64)
        without = Pages(seen.vpn, seen.pm, seen.cat, seen.kflags,
                        np.where(kc > 0, np.maximum(kc - mine, 1), 0).astype(seen.kcount.dtype))
        sub = figures(Facts.of_pages(without, known, pmd=no_pmd), keys)
        lo = np.array([r.lo for r in read], dtype=np.int64)
        hi = np.array([r.hi for r in read], dtype=np.int64)
        for k in keys:
            if k in raw.cols and k in sub.cols:
                change = sub.cols[k].astype(np.int64) - raw.cols[k].astype(np.int64)
                if not change.any():
                    continue  # most figures (RSS, swap, THP...) do not depend on the map count
                total = np.concatenate(([0], np.cumsum(change[at])))
                cols[k] += total[hi] - total[lo]
    rows = iter(dict(zip(keys, vals)) for vals in zip(*(cols[k].tolist() for k in keys)))
    return [{k: r.sums.get(k, 0) for k in keys} if r.sums is not None else next(rows) for r in scan.rollups]


def proc_sums(scan: SystemScan, figs: ScanFigures, reps: np.ndarray) -> list[tuple[dict[str, object], dict[str, int]]]:
    """(key, raw sums) of every process, page-level ones then smaps_rollup ones; key has pid, comm,
    uid, cgroup, mm (pid of the first process on its mm) and source."""
    out: list[tuple[dict[str, object], dict[str, int]]] = []
    for i, p in enumerate(scan.procs):
        out.append((_key(p.ident, scan.procs[reps[i]].pid, SOURCE_PAGES), figs.process(i, p)))
    for r, sums in zip(scan.rollups, figs.rollup):
        out.append((_key(r.ident, r.mm, SOURCE_ROLLUP if r.sums is None else SOURCE_PAGES), sums))
    return out


def process_sums(src: PageSource) -> dict[str, int]:
    """A whole process's raw figure sums from its streamed pages (bounded memory: vma_sums batches),
    SwapPss counting every process's holders of its swap entries (what top's big processes need)."""
    from ..collector.swap import machine_swap_refs

    cols, _unknown = vma_columns(src, FIGURES, swap_refs=machine_swap_refs, per_vma=False)
    return {k: int(cols[k][0]) for k in FIGURES}


def _key(ident: Ident, mm: int, source: str) -> dict[str, object]:
    return {"pid": ident.pid, "comm": ident.comm, "uid": ident.uid, "cgroup": ident.cgroup, "mm": mm,
            "source": source}


def _pmd(pages: Pages, known: Known, scan: SystemScan) -> np.ndarray | None:
    """PMD-mapped pages; without PAGEMAP_SCAN the layout test runs per process (blocks never span two)."""
    if known.categories:
        return pages.pmd_mapped(known)
    if not (known.flags and known.pfn):
        return None
    out = np.zeros(len(pages), dtype=bool)
    for p in scan.procs:
        sub = pages.take(slice(p.lo, p.hi)).pmd_mapped(known)
        if sub is not None:
            out[p.lo:p.hi] = sub
    return out


def _swap_share(scan: SystemScan, reps: np.ndarray) -> np.ndarray | None:
    """Per page: the number of swap ptes holding the same swap entry, each mm counted once."""
    swapped = pmb.swapped(scan.pages.pm)
    if not swapped.any():
        return None
    if scan.swap_refs is not None:  # a selection: holders counted over every process
        return scan.swap_refs.share(scan.pages.pm)
    entry = scan.pages.pm & pmb.PM_PFN_MASK  # swap type (bits 0-4) and offset (5-54)
    owner = np.zeros(len(scan.pages), dtype=bool)
    for i, p in enumerate(scan.procs):
        owner[p.lo:p.hi] = reps[i] == i
    keys, counts = np.unique(entry[swapped & owner], return_counts=True)
    sw = np.flatnonzero(swapped)
    pos = np.minimum(np.searchsorted(keys, entry[sw]), max(len(keys) - 1, 0))
    cnt = np.where(keys[pos] == entry[sw], counts[pos], 1) if len(keys) else np.ones(len(sw), dtype=np.int64)
    out = np.ones(len(scan.pages), dtype=np.int64)
    out[sw] = cnt
    return out


# -- rows -------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of `top` (a process or a group) or of `libs` (a mapping path)."""

    key: dict[str, object]  # pid/comm/user/... or path
    fig: dict[str, int | None]
    nprocs: int = 1

    def as_dict(self) -> dict[str, object]:
        return {**self.key, **self.fig}


def _finish(sums: dict[str, int], unknown: set[str]) -> dict[str, int | None]:
    return finish(sums, unknown, FIGURES)


def process_rows(scan: SystemScan, figs: ScanFigures, reps: np.ndarray,
                 user_of: Callable[[int], str] = str) -> list[Row]:
    """One row per scanned process, figures as its smaps_rollup would show them."""
    rows = []
    for key, sums in proc_sums(scan, figs, reps):
        key = {"pid": key["pid"], "comm": key["comm"], "user": user_of(key["uid"]), **key}  # type: ignore[arg-type]
        rows.append(Row(key, _finish(sums, figs.unknown if key["source"] == SOURCE_PAGES else set())))
    return rows


def group_rows(scan: SystemScan, figs: ScanFigures, reps: np.ndarray, by: str, user_of: Callable[[int], str] = str,
               keep: set[int] | None = None) -> list[Row]:
    """Rows per program (comm), user or cgroup; each mm counted once, in the group of its first pid."""
    acc: dict[str, dict[str, int]] = {}
    procs: dict[str, set[int]] = {}
    for key, sums in proc_sums(scan, figs, reps):
        pid = int(key["pid"])  # type: ignore[call-overload]
        if keep is not None and pid not in keep:
            continue
        name = str({"program": key["comm"], "user": user_of(key["uid"]), "cgroup": key["cgroup"]}[by])  # type: ignore[arg-type]
        procs.setdefault(name, set()).add(pid)
        s = acc.setdefault(name, dict.fromkeys(FIGURES, 0))
        if key["mm"] != pid:
            continue  # this mm is already counted under its first pid
        for k, v in sums.items():
            s[k] += v
    return [Row({by: name}, _finish(s, _unknown(scan, figs)), len(procs[name])) for name, s in acc.items()]


def _unknown(scan: SystemScan, figs: ScanFigures) -> set[str]:
    """What the sums cannot know: nothing when every process was read from smaps_rollup."""
    return figs.unknown if scan.procs or not scan.rollups else set()


def total_row(rows: list[Row], scan: SystemScan, figs: ScanFigures, reps: np.ndarray) -> dict[str, int | None]:
    """Totals of process rows, each mm once."""
    pids = {r.key["pid"] for r in rows}
    seen: set[object] = set()
    sums = dict.fromkeys(FIGURES, 0)
    for key, s in proc_sums(scan, figs, reps):
        if key["pid"] in pids and key["mm"] not in seen:
            seen.add(key["mm"])
            for k, v in s.items():
                sums[k] += v
    return _finish(sums, _unknown(scan, figs))


def mapping_name(v: Vma) -> str:
    """What librank groups by: the path, or the kind of anonymous memory."""
    return v.path or "[anon]"


def _name_index(table: VmaTable, names: dict[str, int]) -> np.ndarray:
    """The index in `names` of each VMA's mapping_name, new names added in the order of their
    first VMA: a Python step per named VMA only (the unnamed ones are all "[anon]")."""
    named = table.named
    at = np.flatnonzero(named).tolist()
    unnamed = np.flatnonzero(~named)
    paths = table.path
    order = at
    if len(unnamed):  # "[anon]" takes its place at the first unnamed VMA
        first = int(unnamed[0])
        k = bisect.bisect_left(at, first)
        order = [*at[:k], first, *at[k:]]
    for i in order:
        names.setdefault(paths[i] or "[anon]", len(names))
    idx = np.full(len(table), names["[anon]"] if len(unnamed) else 0, dtype=np.int64)
    idx[at] = np.fromiter((names[paths[i]] for i in at), dtype=np.int64, count=len(at))
    return idx


def lib_rows(scan: SystemScan, figs: ScanFigures, reps: np.ndarray, path_re: str | None = None) -> list[Row]:
    """One row per mapping path across all processes (librank): each mm counted once. Every VMA's
    sums are read at once (Prefix.between_many) and added per path (np.add.at): a process of
    65,000 VMAs is a few numpy passes, not a dict of figures per VMA."""
    names: dict[str, int] = {}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
    for i, p in enumerate(scan.procs):
        if reps[i] != i:
            continue
        assert p.fixed is None, "a mapping's sums need all its pages in the scan (no scan cache)"
        parts.append((_name_index(p.table, names), p.vma_lo, p.vma_hi, i))
    if not parts:
        return []
    idx = np.concatenate([x[0] for x in parts])
    lo = np.concatenate([x[1] for x in parts]).astype(np.int64)
    hi = np.concatenate([x[2] for x in parts]).astype(np.int64)
    proc = np.concatenate([np.full(len(x[0]), x[3], dtype=np.int64) for x in parts])
    name_list = list(names)
    if path_re:
        rx = re.compile(path_re)
        sel = np.array([rx.search(n) is not None for n in name_list], dtype=bool)[idx]
        idx, lo, hi, proc = idx[sel], lo[sel], hi[sel], proc[sel]
    acc = {}
    for k, v in figs.prefix.between_many(lo, hi).items():
        acc[k] = np.zeros(len(name_list), dtype=np.int64)
        np.add.at(acc[k], idx, v)
    used = hi > lo
    mm_pairs = unique_sorted(idx[used] * len(scan.procs) + proc[used])  # (np.unique imports numpy.ma: 20 ms)
    nmms = np.bincount(mm_pairs // max(len(scan.procs), 1), minlength=len(name_list)).tolist()
    present = np.zeros(len(name_list), dtype=bool)
    present[idx] = True
    cols = {k: v.tolist() for k, v in acc.items()}
    rows = []
    for j in np.flatnonzero(present).tolist():
        s = dict.fromkeys(FIGURES, 0)
        s.update({k: c[j] for k, c in cols.items()})
        if s["rss"] or s["swap"] or s["shared_hugetlb"] or s["private_hugetlb"]:
            rows.append(Row({"path": name_list[j]}, _finish(s, figs.unknown), nmms[j]))
    return rows


def sort_rows(rows: list[Row], key: str, reverse: bool = False) -> list[Row]:
    """Sizes descending, names ascending (reverse flips either)."""
    if key in FIGURES:
        return sorted(rows, key=lambda r: (-(r.fig[key] or 0), str(r.key)), reverse=reverse)
    if key == "procs":
        return sorted(rows, key=lambda r: -r.nprocs, reverse=reverse)
    return sorted(rows, key=lambda r: (r.key.get(key) is None, r.key.get(key)), reverse=reverse)


def reconcile(scan: SystemScan, total: dict[str, int | None]) -> dict[str, int] | None:
    """ΣPss of every mm against /proc/meminfo's AnonPages + Mapped (docs/footprints.md):
    both count every mapped normal page once (rmap adds NR_ANON_MAPPED / NR_FILE_MAPPED when a
    page gets its first mapping); zero pages and hugetlb are in neither."""
    mi = scan.meminfo
    if not scan.complete or total.get("pss") is None or "AnonPages" not in mi or "Mapped" not in mi:
        return None
    if not scan.known.pfn:
        return None  # without root, other users' processes are not in the sum: the comparison would mislead
    mapped = mi["AnonPages"] + mi["Mapped"]
    pss = int(total["pss"])  # type: ignore[arg-type]
    # pmaps itself is not in the scan but is in meminfo: its own smaps_rollup PSS stands in.
    return {"pss_total": pss, "self_pss": scan.self_pss, "meminfo_anon_plus_mapped": mapped,
            "difference": mapped - pss - scan.self_pss}
