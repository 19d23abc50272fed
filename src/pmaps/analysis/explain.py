"""`pmaps explain`: why ps, top, smem and smaps disagree. Each number the usual tools print is shown
as the sum of buckets pmaps measured page by page, so the difference between two tools is a named
set of pages. Pure: pages and the kernel's own numbers in, rows out.

Buckets (each page in exactly one; fs/proc/task_mmu.c and mm/rmap.c say where each tool counts it):
- anon: private anonymous pages (kpageflags ANON, not KSM); ksm: KSM pages (ANON and KSM);
- file: page cache of regular files (not ANON, not SWAPBACKED);
- shmem: tmpfs/memfd/shared anonymous/SysV pages (not ANON, SWAPBACKED);
- zero_page: mappings of the shared zero page (present in pagemap; in no RSS);
- hugetlb: hugetlbfs pages (HUGE; outside RSS/PSS, in *_Hugetlb);
- swap_pte: private pages in swap (swap ptes); swap_shmem: shmem pages in swap (no pte).
RssAnon counts anon and KSM (MM_ANONPAGES), RssFile file (MM_FILEPAGES), RssShmem shmem
(MM_SHMEMPAGES); smaps' Pss_Anon/Pss_File/Pss_Shmem split PSS the same way.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..kernel.kpage import KPF
from ..kernel.pagemap import CAT_SHMEM_SWAP
from ..model import Known, Pages
from ..model.state import S_PRESENT, S_SWAPPED, sbit
from ..numeric import PAGE_SIZE
from .footprint import PSS_SHIFT

BUCKETS = ("anon", "ksm", "file", "shmem", "zero_page", "hugetlb", "swap_pte", "swap_shmem")


@dataclass
class Number:
    """One number a tool prints, the kernel's value, and the buckets it is made of."""

    name: str  # e.g. "VmRSS"
    source: str  # where the kernel prints it, and which tools show it
    kernel: int | None  # bytes, as the kernel reports it now; None when not readable
    buckets: tuple[str, ...]  # what it adds up, from BUCKETS (or "pss:..." for PSS of a bucket)
    pmaps: int = 0  # the sum of those buckets, page by page

    @property
    def difference(self) -> int | None:
        return None if self.kernel is None else self.kernel - self.pmaps


@dataclass
class Explanation:
    pid: int
    comm: str
    buckets: dict[str, int]  # bytes per bucket
    pss: dict[str, int]  # PSS bytes per bucket (anon, ksm, file, shmem)
    numbers: list[Number] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def buckets_of(p: Pages, known: Known) -> tuple[dict[str, int], dict[str, int]]:
    """(bytes per bucket, PSS bytes per resident bucket) of pages with kpageflags and counts."""
    st = p.state(known)
    kf = p.kflags if p.kflags is not None else np.zeros(len(p), dtype=np.uint64)

    def k(name: str) -> np.ndarray:
        return ((kf >> np.uint64(KPF[name])) & np.uint64(1)).astype(bool)

    pres = sbit(st, S_PRESENT)
    zero = pres & k("zero_page")
    huge = pres & k("huge")
    normal = pres & ~zero & ~huge
    anon_all = normal & k("anon")
    shm_swap = (p.cat & CAT_SHMEM_SWAP) != 0
    masks = {
        "anon": anon_all & ~k("ksm"),
        "ksm": anon_all & k("ksm"),
        "file": normal & ~k("anon") & ~k("swapbacked"),
        "shmem": normal & ~k("anon") & k("swapbacked"),
        "zero_page": zero,
        "hugetlb": huge,
        "swap_pte": sbit(st, S_SWAPPED) & ~shm_swap,
        "swap_shmem": shm_swap,
    }
    mc = np.maximum(p.mapcount(known), 1)
    fixed = (PAGE_SIZE << PSS_SHIFT) // mc
    buckets = {b: int(m.sum()) * PAGE_SIZE for b, m in masks.items()}
    # PSS in fixed point: a number made of several buckets is summed, then shifted once (as smaps).
    pss = {b: int(fixed[masks[b]].sum()) for b in ("anon", "ksm", "file", "shmem")}
    return buckets, pss


def explain(pid: int, comm: str, pages: Pages, known: Known, status: dict[str, int] | None,
            rollup: dict[str, int] | None, uss: int, swap_pss: int) -> Explanation:
    """The well-known numbers of one process (its pages and what is known of them) against pmaps'
    buckets (bytes)."""
    b, pss_fixed = buckets_of(pages, known)
    pss = {k: v >> PSS_SHIFT for k, v in pss_fixed.items()}
    ex = Explanation(pid, comm, b, pss)
    st, ro = status or {}, rollup or {}

    def num(name: str, source: str, kernel: int | None, parts: tuple[str, ...]) -> None:
        total = sum(b[x] for x in parts if not x.startswith("pss:"))
        total += sum(pss_fixed[x[4:]] for x in parts if x.startswith("pss:")) >> PSS_SHIFT
        ex.numbers.append(Number(name, source, kernel, parts, total))

    num("VmRSS", "/proc/PID/status; ps RSS, top RES, docker-style per-process RSS", st.get("VmRSS"),
        ("anon", "ksm", "file", "shmem"))
    num("RssAnon", "/proc/PID/status", st.get("RssAnon"), ("anon", "ksm"))
    num("RssFile", "/proc/PID/status", st.get("RssFile"), ("file",))
    num("RssShmem", "/proc/PID/status; top SHR includes it with RssFile", st.get("RssShmem"), ("shmem",))
    num("Rss", "smaps_rollup; smem RSS", ro.get("Rss"), ("anon", "ksm", "file", "shmem"))
    num("Pss", "smaps_rollup; smem PSS, ps_mem", ro.get("Pss"), ("pss:anon", "pss:ksm", "pss:file", "pss:shmem"))
    num("Pss_Anon", "smaps_rollup", ro.get("Pss_Anon"), ("pss:anon", "pss:ksm"))
    num("Pss_File", "smaps_rollup", ro.get("Pss_File"), ("pss:file",))
    num("Pss_Shmem", "smaps_rollup", ro.get("Pss_Shmem"), ("pss:shmem",))
    uss_k = (ro["Private_Clean"] + ro["Private_Dirty"]) if "Private_Clean" in ro else None
    ex.numbers.append(Number("USS", "smaps_rollup Private_Clean + Private_Dirty; smem USS", uss_k, ("uss",), uss))
    num("Swap", "smaps_rollup; smem SWAP (VmSwap leaves shmem out)", ro.get("Swap"), ("swap_pte", "swap_shmem"))
    num("VmSwap", "/proc/PID/status", st.get("VmSwap"), ("swap_pte",))
    ex.numbers.append(Number("SwapPss", "smaps_rollup", ro.get("SwapPss"), ("swap_pss",), swap_pss))
    ex.notes.append(f"in no RSS: zero page {b['zero_page']} B (mapped, costs nothing), hugetlb {b['hugetlb']} B "
                    "(counted in Shared/Private_Hugetlb and in the hugetlb pool, not in RSS)")
    return ex


# -- the whole machine ---------------------------------------------------------------------------

# (meminfo field, pmaps' bucket of physical pages by kpageflags, the buckets' definition)
SYSTEM_NUMBERS = (
    ("MemFree", "buddy", "free pages in the buddy allocator (BUDDY); MemFree also counts per-CPU free lists"),
    ("AnonPages", "anon_mapped", "anonymous pages mapped by a process (ANON and MMAP), THPs whole"),
    ("Mapped", "file_mapped", "file and shmem pages mapped by a process (MMAP, not ANON)"),
    ("Shmem", "shmem", "shmem pages, mapped or not (SWAPBACKED, not ANON)"),
    ("Slab", "slab", "slab pages (SLAB)"),
    ("PageTables", "pgtable", "page-table pages (PGTABLE)"),
    ("Hugetlb", "hugetlb", "hugetlb pages (HUGE)"),
    ("Unevictable", "unevictable", "pages on the unevictable LRU (UNEVICTABLE and LRU)"),
)


def system_buckets(chunks: Iterable[tuple[int, np.ndarray]]) -> dict[str, int]:
    """Bytes of physical memory per bucket from (first PFN, kpageflags) chunks."""
    names = {b for _, b, _ in SYSTEM_NUMBERS}
    out = dict.fromkeys(names, 0)

    def bit(f: np.ndarray, n: str) -> np.ndarray:
        return ((f >> np.uint64(KPF[n])) & np.uint64(1)).astype(bool)

    for _start, f in chunks:
        anon, mmap = bit(f, "anon"), bit(f, "mmap")
        masks = {"buddy": bit(f, "buddy"), "anon_mapped": anon & mmap, "file_mapped": mmap & ~anon,
                 "shmem": bit(f, "swapbacked") & ~anon & ~bit(f, "slab"), "slab": bit(f, "slab"),
                 "pgtable": bit(f, "pgtable"), "hugetlb": bit(f, "huge"),
                 "unevictable": bit(f, "unevictable") & bit(f, "lru")}
        for k, m in masks.items():
            out[k] += int(m.sum()) * PAGE_SIZE
    return out


def explain_system(meminfo: dict[str, int], buckets: dict[str, int], pss_total: int | None,
                   self_share: int) -> list[Number]:
    """meminfo's numbers against pages counted by their kpageflags, and Σ PSS against AnonPages+Mapped."""
    rows = [Number(name, f"/proc/meminfo; {what}", meminfo.get(name), (bucket,), buckets[bucket])
            for name, bucket, what in SYSTEM_NUMBERS]
    if pss_total is not None and "AnonPages" in meminfo and "Mapped" in meminfo:
        rows.append(Number("AnonPages+Mapped", "/proc/meminfo; every mapped page once, as Σ PSS of all processes",
                           meminfo["AnonPages"] + meminfo["Mapped"], ("pss_all_processes", "pmaps_itself"),
                           pss_total + self_share))
    return rows


# -- one memory cgroup -------------------------------------------------------------------------

KINDS = ("anon", "file_active", "file_inactive", "shmem", "kernel")
CGROUP_BUCKETS = tuple(f"{w}_{k}" for w in ("own", "below") for k in KINDS)


def cgroup_buckets(chunks: Iterable[tuple[int, np.ndarray, np.ndarray]], own: int,
                   below: set[int]) -> dict[str, int]:
    """Bytes charged (kpagecgroup) to one memcg ("own_*") and to its descendants ("below_*"), by kind,
    classed as `pmaps cgroups` classes them (analysis.cgroups.classify); file pages split by ACTIVE."""
    from .cgroups import classify

    out = dict.fromkeys(CGROUP_BUCKETS, 0)
    kids = np.array(sorted(below), dtype=np.uint64)
    for _start, flags, cg in chunks:
        f0 = flags[: len(cg)]
        for who, sel in (("own", cg == np.uint64(own)), ("below", np.isin(cg, kids) if len(kids) else None)):
            if sel is None or not sel.any():
                continue
            c = classify(f0[sel])
            for k, m in (("anon", c["anon"]), ("shmem", c["shmem"]), ("file_active", c["file"] & c["active"]),
                         ("file_inactive", c["file"] & ~c["active"]), ("kernel", c["kernel"])):
                out[f"{who}_{k}"] += int(m.sum()) * PAGE_SIZE
    return out


def explain_cgroup(version: int, usage: int | None, inactive_file: int | None, own: dict[str, int | None],
                   b: dict[str, int]) -> list[Number]:
    """The cgroup's numbers against its charged pages: usage and working set are hierarchical (the
    cgroup and everything below it), memory.stat's anon/file/shmem its own (total less children)."""
    v1 = version == 1
    everything = tuple(CGROUP_BUCKETS)
    ws = tuple(x for x in everything if not x.endswith("file_inactive"))
    return [
        Number("usage_in_bytes" if v1 else "memory.current", "hierarchical; docker stats (cgroup v1) shows it",
               usage, everything, sum(b[x] for x in everything)),
        Number("working set", "usage - total inactive_file: cAdvisor, kubectl top, docker stats (v2)",
               None if usage is None or inactive_file is None else usage - inactive_file, ws, sum(b[x] for x in ws)),
        Number("rss" if v1 else "anon", "memory.stat, this cgroup alone", own.get("anon"), ("own_anon",),
               b["own_anon"]),
        Number("cache" if v1 else "file", "memory.stat, this cgroup alone (shmem included)", own.get("file"),
               ("own_file_active", "own_file_inactive", "own_shmem"),
               b["own_file_active"] + b["own_file_inactive"] + b["own_shmem"]),
        Number("shmem", "memory.stat, this cgroup alone", own.get("shmem"), ("own_shmem",), b["own_shmem"]),
    ]
