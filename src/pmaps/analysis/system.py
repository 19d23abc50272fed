"""Footprints of every process of a SystemScan, the way /proc/PID/smaps_rollup adds them. Pure.

Per page (fs/proc/task_mmu.c smaps_account / smaps_pte_entry / smaps_hugetlb_range, 6.x):
- Rss: present pages except the zero page and huge zero page (vm_normal_page() is NULL for them)
  and except hugetlb pages (kpageflags HUGE), which smaps counts in Shared/Private_Hugetlb only.
- Pss: PAGE_SIZE << PSS_SHIFT divided by the page's mapcount (kpagecount), in 12-bit fixed point,
  summed over all of a process's VMAs and shifted once, as smaps_rollup does.
- USS (Private_Clean + Private_Dirty): pages mapped once (mapcount < 2).
- Swap: swap ptes. SwapPss: PAGE_SIZE << PSS_SHIFT divided by the swap entry's count
  (swp_swapcount). No interface exports that count, but every reference to a private swap entry
  is a swap pte in some page table: counting equal swap entries over the scanned mms gives it,
  exactly when every holder is in the scan (see docs/footprints.md).
- AnonHugePages: anonymous pages mapped by a PMD (PAGEMAP_SCAN PAGE_IS_HUGE). KSM: kpageflags KSM.
- Shared/Private_Hugetlb: hugetlb pages with mapcount >= 2 / < 2 (folio_maybe_mapped_shared).

Processes sharing one mm (CLONE_VM without CLONE_THREAD, e.g. vfork) each show the whole mm, as
their smaps_rollup does; totals and groups count every mm once (see `mm_reps`). Threads are not
listed in /proc at all (only thread group leaders are), so they are never counted twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF
from ..kernel.maps import Vma
from ..kernel.scan import CAT_HUGE, CAT_PFNZERO
from ..model import Pages
from ..sysscan import SystemScan
from .footprint import _pmd_thp_fallback

PAGE = 4096
PSS_SHIFT = 12
U64 = np.uint64
# Byte figures of a row, in output order; pss and swap_pss are summed in fixed point.
FIGURES = ("rss", "pss", "uss", "shared", "swap", "swap_pss", "anon_thp", "ksm", "shared_hugetlb",
           "private_hugetlb")
FIXED = ("pss", "swap_pss")
MM_SAMPLE = 16  # exclusive pages compared to prove two pids share an mm


def _kbit(kflags: np.ndarray, name: str) -> np.ndarray:
    return (kflags >> U64(KPF[name]) & U64(1)).astype(bool)


class _Prefix:
    """Prefix sums of one figure, readable at the boundaries of processes and VMAs only."""

    def __init__(self, pos: dict[int, int], sums: list[int]) -> None:
        self.pos, self.sums = pos, sums

    def __getitem__(self, page_index: int) -> int:
        return self.sums[self.pos[page_index]]


@dataclass
class PageFigures:
    """Per-page contributions, and which figures this scan can tell at all.

    Columns are bool masks (worth PAGE each) or int64 fixed-point values; they are summed per
    segment between process and VMA boundaries (np.add.reduceat), never into full-length
    int64 prefix arrays: 4 M pages x 10 figures would be 350 MB of temporaries.
    """

    cols: dict[str, np.ndarray]
    unknown: set[str]
    bounds: np.ndarray  # sorted page indexes of every process and VMA start and end
    _prefix: dict[str, _Prefix] | None = None

    def prefix(self) -> dict[str, _Prefix]:
        """Prefix sums at the boundaries (computed once): any [lo, hi) boundary slice sums in O(1)."""
        if self._prefix is None:
            b = self.bounds
            pos = {int(x): i for i, x in enumerate(b.tolist())}
            starts = b[:-1]
            empty = b[1:] == starts
            self._prefix = {}
            for k, v in self.cols.items():
                if len(starts) and len(v):
                    # b is sorted and unique with b[-1] == len(v), so every start is a valid
                    # index; reduceat gives v[start] for empty segments: zero those.
                    seg = np.add.reduceat(v, starts, dtype=np.int64)
                    seg[empty] = 0
                    if v.dtype == bool:
                        seg *= PAGE
                else:
                    seg = np.zeros(len(starts), dtype=np.int64)
                self._prefix[k] = _Prefix(pos, [0, *np.cumsum(seg).tolist()])
        return self._prefix


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
    by_maps: dict[tuple, list[int]] = {}
    for i, p in enumerate(scan.procs):
        by_maps.setdefault(tuple(p.vmas), []).append(i)
    pm = scan.pages.pm
    for members in by_maps.values():
        if len(members) < 2:
            continue
        excl: dict[int, np.ndarray] = {}
        for i in members:
            p = scan.procs[i]
            e = pm[p.lo:p.hi]
            sel = pmb.present(e) & pmb.bit(e, pmb.PM_EXCLUSIVE)
            if scan.pages.kflags is not None:
                sel &= ~_kbit(scan.pages.kflags[p.lo:p.hi], "zero_page")
            excl[i] = np.sort(e[sel] & pmb.PM_PFN_MASK)
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


def page_figures(scan: SystemScan, reps: np.ndarray) -> PageFigures:
    """Each page's contribution to every figure (bytes, or fixed point for pss/swap_pss)."""
    pages, known = scan.pages, scan.known
    n = len(pages)
    pm = pages.pm
    present = pmb.present(pm)
    swapped = pmb.swapped(pm)
    kf = pages.kflags if known.flags else None
    if kf is not None:
        zero = _kbit(kf, "zero_page")
        huge = present & _kbit(kf, "huge")
    else:
        zero = (pages.cat & CAT_PFNZERO) != 0 if known.categories else np.zeros(n, dtype=bool)
        huge = np.zeros(n, dtype=bool)
    res = present & ~zero & ~huge
    unknown: set[str] = set()
    cols: dict[str, np.ndarray] = {"rss": res}
    if known.count and pages.kcount is not None:
        mc = np.maximum(pages.kcount.astype(np.int64), 1)
        cols["pss"] = np.where(res, (PAGE << PSS_SHIFT) // mc, 0)
        single = mc < 2
    else:
        mc = None
        cols["pss"] = np.zeros(n, dtype=np.int64)
        unknown.add("pss")
        single = pmb.bit(pm, pmb.PM_EXCLUSIVE)
    cols["uss"] = res & single
    cols["shared"] = res & ~single
    cols["swap"] = swapped
    cols["swap_pss"] = _swap_pss(scan, reps, swapped)
    anon = _kbit(kf, "anon") if kf is not None else ~pmb.bit(pm, pmb.PM_FILE)
    if known.categories:
        cols["anon_thp"] = res & anon & ((pages.cat & CAT_HUGE) != 0)
    elif kf is not None:
        thp = np.zeros(n, dtype=bool)
        cand = res & anon & _kbit(kf, "thp")
        for p in scan.procs:
            thp[p.lo:p.hi] = _pmd_thp_fallback(pages.take(slice(p.lo, p.hi)), cand[p.lo:p.hi])
        cols["anon_thp"] = thp
    else:
        cols["anon_thp"] = np.zeros(n, dtype=bool)
        unknown.add("anon_thp")
    if kf is not None and mc is not None:
        cols["ksm"] = res & _kbit(kf, "ksm")
        cols["shared_hugetlb"] = huge & (mc >= 2)
        cols["private_hugetlb"] = huge & (mc < 2)
    else:
        for k in ("ksm", "shared_hugetlb", "private_hugetlb"):
            cols[k] = np.zeros(n, dtype=bool)
            unknown.add(k)
    edges = [np.array([0, n], dtype=np.int64)]
    for p in scan.procs:
        edges += [np.array([p.lo, p.hi], dtype=np.int64), p.vma_lo, p.vma_hi]
    return PageFigures(cols, unknown, np.unique(np.concatenate(edges)))


def _swap_pss(scan: SystemScan, reps: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """PAGE_SIZE << PSS_SHIFT / (number of swap ptes holding the same entry, one mm counted once)."""
    out = np.zeros(len(scan.pages), dtype=np.int64)
    if not swapped.any():
        return out
    entry = scan.pages.pm & pmb.PM_PFN_MASK  # swap type (bits 0-4) and offset (5-54)
    owner = np.zeros(len(scan.pages), dtype=bool)
    for i, p in enumerate(scan.procs):
        owner[p.lo:p.hi] = reps[i] == i
    keys, counts = np.unique(entry[swapped & owner], return_counts=True)
    sw = np.flatnonzero(swapped)
    pos = np.minimum(np.searchsorted(keys, entry[sw]), max(len(keys) - 1, 0))
    cnt = np.where(keys[pos] == entry[sw], counts[pos], 1) if len(keys) else np.ones(len(sw), dtype=np.int64)
    out[sw] = (PAGE << PSS_SHIFT) // np.maximum(cnt, 1)
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
    return {k: None if k in unknown else (sums[k] >> PSS_SHIFT if k in FIXED else sums[k]) for k in FIGURES}


def process_rows(scan: SystemScan, figs: PageFigures, reps: np.ndarray, user_of=str) -> list[Row]:
    """One row per scanned process, figures as its smaps_rollup would show them."""
    cs = figs.prefix()
    rows = []
    for i, p in enumerate(scan.procs):
        sums = {k: int(cs[k][p.hi] - cs[k][p.lo]) for k in FIGURES}
        key = {"pid": p.pid, "comm": p.ident.comm, "user": user_of(p.ident.uid), "uid": p.ident.uid,
               "cgroup": p.ident.cgroup, "mm": scan.procs[reps[i]].pid}
        rows.append(Row(key, _finish(sums, figs.unknown)))
    return rows


def group_rows(scan: SystemScan, figs: PageFigures, reps: np.ndarray, by: str, user_of=str,
               keep: set[int] | None = None) -> list[Row]:
    """Rows per program (comm), user or cgroup; each mm counted once, in the group of its first pid."""
    cs = figs.prefix()
    acc: dict[str, dict[str, int]] = {}
    procs: dict[str, set[int]] = {}
    for i, p in enumerate(scan.procs):
        if keep is not None and p.pid not in keep:
            continue
        name = {"program": p.ident.comm, "user": user_of(p.ident.uid), "cgroup": p.ident.cgroup}[by]
        procs.setdefault(name, set()).add(p.pid)
        s = acc.setdefault(name, dict.fromkeys(FIGURES, 0))
        if reps[i] != i:
            continue  # this mm is already counted under its first pid
        for k in FIGURES:
            s[k] += int(cs[k][p.hi] - cs[k][p.lo])
    return [Row({by: name}, _finish(s, figs.unknown), len(procs[name])) for name, s in acc.items()]


def total_row(rows: list[Row], scan: SystemScan, figs: PageFigures, reps: np.ndarray) -> dict[str, int | None]:
    """Totals of process rows, each mm once."""
    cs = figs.prefix()
    pids = {r.key["pid"] for r in rows}
    seen: set[int] = set()
    sums = dict.fromkeys(FIGURES, 0)
    for i, p in enumerate(scan.procs):
        if p.pid in pids and int(reps[i]) not in seen:
            seen.add(int(reps[i]))
            for k in FIGURES:
                sums[k] += int(cs[k][p.hi] - cs[k][p.lo])
    return _finish(sums, figs.unknown)


def mapping_name(v: Vma) -> str:
    """What librank groups by: the path, or the kind of anonymous memory."""
    return v.path or "[anon]"


def lib_rows(scan: SystemScan, figs: PageFigures, reps: np.ndarray, path_re: str | None = None) -> list[Row]:
    """One row per mapping path across all processes (librank): each mm counted once."""
    cs = figs.prefix()
    acc: dict[str, dict[str, int]] = {}
    mms: dict[str, set[int]] = {}
    rx = re.compile(path_re) if path_re else None
    for i, p in enumerate(scan.procs):
        if reps[i] != i:
            continue
        for v, lo, hi in zip(p.vmas, p.vma_lo.tolist(), p.vma_hi.tolist()):
            name = mapping_name(v)
            if rx is not None and not rx.search(name):
                continue
            s = acc.setdefault(name, dict.fromkeys(FIGURES, 0))
            mms.setdefault(name, set())
            if hi > lo:
                mms[name].add(i)
                for k in FIGURES:
                    s[k] += int(cs[k][hi] - cs[k][lo])
    return [Row({"path": name}, _finish(s, figs.unknown), len(mms[name])) for name, s in acc.items()
            if s["rss"] or s["swap"] or s["shared_hugetlb"] or s["private_hugetlb"]]


def sort_rows(rows: list[Row], key: str, reverse: bool = False) -> list[Row]:
    """Sizes descending, names ascending (reverse flips either)."""
    if key in FIGURES:
        return sorted(rows, key=lambda r: (-(r.fig[key] or 0), str(r.key)), reverse=reverse)
    if key == "procs":
        return sorted(rows, key=lambda r: -r.nprocs, reverse=reverse)
    return sorted(rows, key=lambda r: (r.key.get(key) is None, r.key.get(key)), reverse=reverse)  # type: ignore


def reconcile(scan: SystemScan, total: dict[str, int | None]) -> dict[str, int] | None:
    """ΣPss of every mm against /proc/meminfo's AnonPages + Mapped (docs/footprints.md):
    both count every mapped normal page once (rmap adds NR_ANON_MAPPED / NR_FILE_MAPPED when a
    page gets its first mapping); zero pages and hugetlb are in neither."""
    mi = scan.meminfo
    if not scan.complete or total.get("pss") is None or "AnonPages" not in mi or "Mapped" not in mi:
        return None
    mapped = mi["AnonPages"] + mi["Mapped"]
    pss = int(total["pss"])  # type: ignore[arg-type]
    # pmaps itself is not in the scan but is in meminfo: its own smaps_rollup PSS stands in.
    return {"pss_total": pss, "self_pss": scan.self_pss, "meminfo_anon_plus_mapped": mapped,
            "difference": mapped - pss - scan.self_pss}


def pages_of(scan: SystemScan, i: int) -> Pages:
    p = scan.procs[i]
    return scan.pages.take(slice(p.lo, p.hi))
