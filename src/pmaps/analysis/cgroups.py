"""Pages charged to each memory cgroup (kpagecgroup + kpageflags, one pass over physical memory),
beside the kernel's memory.stat; and file/shmem pages charged to one cgroup but mapped by the
processes of others ("charged here, mapped elsewhere")."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kernel import pagemap as pmb
from ..kernel.kpage import KPF
from ..model import SystemScan
from ..model.mapped import MappedScan
from ..numeric import PAGE_SIZE

U64 = np.uint64


def _b(name: str) -> np.uint64:
    return U64(1 << KPF[name])


# How a charged page is classed from its kpageflags (include/uapi/linux/kernel-page-flags.h):
# anon pages carry ANON; shmem/tmpfs pages are SWAPBACKED without ANON; page cache is the rest of
# the LRU/uptodate pages; "kernel" is what is charged but none of these (page tables, slab, stacks).
KINDS = ("anon", "file", "shmem", "kernel")
BITS = ("swapbacked", "anon_thp", "dirty", "writeback", "active", "inactive", "unevictable", "mapped_file",
        "active_anon", "inactive_anon", "active_file", "inactive_file", "file_dirty")
# The kernel's LRU lists, as memory.stat counts them: a folio is on an anon list when it is
# SWAPBACKED (anon and shmem), on a file list otherwise (page cache, and MADV_FREE'd anon:
# include/linux/mm_inline.h folio_is_file_lru); the unevictable list takes mlocked and
# unevictable-mapping folios whatever their kind, with PG_active cleared (mm/swap.c lru_add).
LRU_KEYS = ("active_anon", "inactive_anon", "active_file", "inactive_file")
FIELDS = KINDS + BITS


def classify(flags: np.ndarray) -> dict[str, np.ndarray]:
    """Bool columns per FIELDS for pages with these kpageflags."""
    def has(name: str) -> np.ndarray:
        return (flags & _b(name)) != 0

    anon, sb, lru, act = has("anon"), has("swapbacked"), has("lru"), has("active")
    shmem = sb & ~anon
    evictable = lru & ~has("unevictable")
    file = ~anon & ~sb & (lru | has("uptodate")) & ~has("slab") & ~has("pgtable")
    return {"anon": anon, "file": file, "shmem": shmem, "kernel": ~(anon | file | shmem), "swapbacked": sb,
            "anon_thp": anon & has("thp"), "dirty": has("dirty"), "writeback": has("writeback"),
            "active": lru & act, "inactive": lru & ~act, "unevictable": has("unevictable"),
            "mapped_file": (file | shmem) & has("mmap"),
            "active_anon": evictable & act & sb, "inactive_anon": evictable & ~act & sb,
            "active_file": evictable & act & ~sb, "inactive_file": evictable & ~act & ~sb,
            # what memory.stat's dirty counts: page cache whose mapping accounts dirtying
            # (mm/page-writeback.c folio_account_dirtied); shmem and swap cache mark folios
            # dirty without it (noop_dirty_folio), so their DIRTY bit is not in it
            "file_dirty": file & has("dirty")}


@dataclass
class Charged:
    """Pages per memcg inode and FIELDS, and (when kept) the memcg inode of every PFN."""

    pages: dict[int, dict[str, int]]
    by_pfn: np.ndarray | None = None


def charged_pages(chunks: Iterable[tuple[int, np.ndarray, np.ndarray]], keep: bool = False,
                  inodes: Iterable[int] = ()) -> Charged:
    """Fold (first PFN, kpageflags, kpagecgroup) chunks into per-memcg counts. `inodes`, the memcg
    inodes known beforehand, turn the grouping into a binary search over a few values instead
    of a sort of every charged page; an inode not among them (a cgroup made meanwhile) still counts."""
    out: dict[int, dict[str, int]] = {}
    kept = []
    known = np.array(sorted(set(inodes)), dtype=U64)
    for _, flags, cg in chunks:
        flags = flags[: len(cg)]
        if keep:
            kept.append(cg)
        sel = cg != 0
        if not sel.any():
            continue
        cgs = cg[sel]
        pos = np.minimum(np.searchsorted(known, cgs), max(len(known) - 1, 0)) if len(known) else None
        if pos is not None and bool((known[pos] == cgs).all()):
            inos, inv = known, pos
        else:
            inos, inv = np.unique(cgs, return_inverse=True)
        cols = classify(flags[sel])
        total = np.bincount(inv, minlength=len(inos))
        counts = {k: np.bincount(inv[cols[k]], minlength=len(inos)) for k in FIELDS}
        for j in np.flatnonzero(total).tolist():
            d = out.setdefault(int(inos[j]), dict.fromkeys(("pages", *FIELDS), 0))
            d["pages"] += int(total[j])
            for k in FIELDS:
                d[k] += int(counts[k][j])
    return Charged(out, np.concatenate(kept) if keep and kept else None)


# memory.stat keys comparable with what pmaps counts (bytes): v1 Documentation/admin-guide/
# cgroup-v1/memory.rst 5.2 (local, not total_*), v2 Documentation/admin-guide/cgroup-v2.rst.
# pmaps' "file" excludes shmem; the kernel's file/cache includes it: compared as file + shmem.
KERNEL_KEYS = {
    1: {"anon": "rss", "file": "cache", "shmem": "shmem", "mapped_file": "mapped_file", "dirty": "dirty",
        "writeback": "writeback", "thp": "rss_huge", "unevictable": "unevictable", **{k: k for k in LRU_KEYS}},
    2: {"anon": "anon", "file": "file", "shmem": "shmem", "mapped_file": "file_mapped", "dirty": "file_dirty",
        "writeback": "file_writeback", "thp": "anon_thp", "unevictable": "unevictable", **{k: k for k in LRU_KEYS}},
}


def pmaps_side(counts: dict[str, int]) -> dict[str, int]:
    """pmaps' figures in the kernel's terms (bytes), for the comparison."""
    c = counts
    return {"anon": c["anon"] * PAGE_SIZE, "file": (c["file"] + c["shmem"]) * PAGE_SIZE,
            "shmem": c["shmem"] * PAGE_SIZE, "mapped_file": c["mapped_file"] * PAGE_SIZE,
            "dirty": c["file_dirty"] * PAGE_SIZE, "writeback": c["writeback"] * PAGE_SIZE,
            "thp": c["anon_thp"] * PAGE_SIZE, "unevictable": c["unevictable"] * PAGE_SIZE,
            **{k: c[k] * PAGE_SIZE for k in LRU_KEYS}}


def kernel_side(path: str, stats: dict[str, dict[str, int] | None], version: int) -> dict[str, int | None]:
    """memory.stat of `path` as kpagecgroup sees it: the cgroup's hierarchical figure (v1 total_*,
    v2's own) less its online children's. This folds in pages still charged to removed (offline)
    children, which kpagecgroup reports at the nearest online ancestor (mm/memcontrol.c
    page_cgroup_ino) while the local v1 figures leave them out."""
    keys = KERNEL_KEYS[version]
    st = stats.get(path)
    if st is None:
        return dict.fromkeys(keys)
    prefix = "total_" if version == 1 else ""
    kids = [c for c in stats if c != path and _parent(c) == path]
    out: dict[str, int | None] = {}
    for k, v in keys.items():
        val = st.get(prefix + v)
        if val is not None:
            for c in kids:
                val -= (stats.get(c) or {}).get(prefix + v, 0)
        out[k] = val
    return out


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


@dataclass
class Mapped:
    """file/shmem pages by who is charged and who maps them (cgroup paths)."""

    here: dict[str, int] = field(default_factory=dict)  # charged to C, mapped by a process of C
    elsewhere: dict[str, int] = field(default_factory=dict)  # charged to C, mapped only by other cgroups
    from_others: dict[str, int] = field(default_factory=dict)  # mapped by C's processes, charged elsewhere
    # (charged cgroup, mapper cgroup, pid, comm, mapping path) -> pages, for --detail
    detail: dict[tuple[str, str, int, str, str], int] = field(default_factory=dict)


def mapped_by(scan: MappedScan, by_pfn: np.ndarray, names: dict[int, str]) -> Mapped:
    """Join every process's present file/shmem pages (collector.mapped) with kpagecgroup.

    Per PFN, in dense boolean columns over physical memory (no sort of the mapped pages): whether
    a process of its own memcg maps it, whether any process does. Pages charged to no memcg, or to
    one not in `names`, count nowhere."""
    res = Mapped()
    paths = sorted({p.cgroup for p in scan.procs} | set(names.values()))
    gid = {p: i for i, p in enumerate(paths)}
    n = len(paths)
    ok = (scan.pfn >= 0) & (scan.pfn < len(by_pfn))
    pfn, prow, mp = scan.pfn[ok], scan.proc[ok], scan.mapping[ok]
    mapper = np.array([gid[p.cgroup] for p in scan.procs], dtype=np.int64)[prow] if len(prow) else prow
    keys = np.array(sorted(names), dtype=U64)
    vals = np.array([gid[names[k]] for k in sorted(names)], dtype=np.int64)
    ino = by_pfn[pfn]
    pos = np.clip(np.searchsorted(keys, ino), 0, max(len(keys) - 1, 0))
    charged = np.where((ino != 0) & (keys[pos] == ino), vals[pos], -1) if len(keys) else np.full(len(pfn), -1)
    k = charged >= 0
    pfn, prow, mp, mapper, charged = pfn[k], prow[k], mp[k], mapper[k], charged[k]
    # per PFN: its memcg (each row of one PFN has the same), mapped at home, mapped at all
    size = len(by_pfn)
    memcg = np.zeros(size, dtype=np.int32)
    memcg[pfn] = charged
    home = np.zeros(size, dtype=bool)
    home[pfn[mapper == charged]] = True
    mapped = np.zeros(size, dtype=bool)
    mapped[pfn] = True
    here = np.bincount(memcg[np.flatnonzero(home)], minlength=n)
    elsewhere = np.bincount(memcg[np.flatnonzero(mapped & ~home)], minlength=n)
    # mapped by M's processes, charged elsewhere: distinct (PFN, M) pairs
    cross = mapper != charged
    pair = np.unique(pfn[cross] * n + mapper[cross])
    from_others = np.bincount(pair % n, minlength=n)
    for i, cgp in enumerate(paths):
        res.here[cgp], res.elsewhere[cgp], res.from_others[cgp] = int(here[i]), int(elsewhere[i]), int(from_others[i])
    # detail: pages per (charged, process, mapping) across cgroups
    if cross.any():
        npath = max(len(scan.paths), 1)
        key = (charged[cross] * len(scan.procs) + prow[cross]) * npath + mp[cross]
        uk, cnt = np.unique(key, return_counts=True)
        for kk, c in zip(uk.tolist(), cnt.tolist()):
            rest, m = divmod(kk, npath)
            ch, pi = divmod(rest, len(scan.procs))
            proc = scan.procs[pi]
            res.detail[(paths[ch], proc.cgroup, proc.pid, proc.comm, scan.paths[m])] = c
    return res


COMPARED = ("anon", "file", "shmem", "mapped_file", "thp", "dirty", "writeback", "unevictable", *LRU_KEYS)


def rows(charged: Charged, names: dict[int, str], stats: dict[str, dict[str, int] | None], version: int,
         mapped: Mapped | None, lru_gen: bool = False) -> list[dict[str, Any]]:
    """One row per memory cgroup with charged pages or a memory.stat: bytes, path as in /proc/PID/cgroup.
    `lru_gen`: the multi-gen LRU is on, so kpageflags cannot split active from inactive
    (kernel.cgroup.lru_gen_enabled): those differences are None, the kernel's figures stay."""
    out = []
    by_path: dict[str, dict[str, int]] = {}
    for ino, c in charged.pages.items():
        path = names.get(ino, f"?{ino}")
        acc = by_path.setdefault(path, dict.fromkeys(("pages", *FIELDS), 0))
        for k, v in c.items():
            acc[k] += v
    for path in sorted(set(by_path) | set(stats)):
        c = by_path.get(path, dict.fromkeys(("pages", *FIELDS), 0))
        st = stats.get(path)
        ours, theirs = pmaps_side(c), kernel_side(path, stats, version)
        row: dict[str, Any] = {"path": path, "charged": c["pages"] * PAGE_SIZE,
                               **{k: c[k] * PAGE_SIZE for k in FIELDS if k != "kernel"}}
        row["kernel_pages"] = c["kernel"] * PAGE_SIZE  # "kernel" is the memory.stat object below
        row["kernel"] = st
        row["compare"] = {}
        for k in COMPARED:
            kv = theirs[k]
            blind = lru_gen and k in LRU_KEYS
            row["compare"][k] = {"pmaps": ours[k], "kernel": kv,
                                 "difference": None if kv is None or blind else ours[k] - kv}
        if mapped is not None:
            row["mapped_here"] = mapped.here.get(path, 0) * PAGE_SIZE
            row["mapped_elsewhere"] = mapped.elsewhere.get(path, 0) * PAGE_SIZE
            row["mapped_from_others"] = mapped.from_others.get(path, 0) * PAGE_SIZE
            row["not_mapped"] = max(0, (c["file"] + c["shmem"] - mapped.here.get(path, 0)
                                        - mapped.elsewhere.get(path, 0)) * PAGE_SIZE)
        out.append(row)
    return out


# -- top --group-by cgroup: who pays for the pages the scanned processes map --------------------------

CHARGE_KEYS = ("charged", "mapped_elsewhere", "mapped_from_others")


@dataclass
class GroupCharges:
    """Distinct pages (PFNs) that the processes of a scan map, by the memory cgroup kpagecgroup
    charges them to and by the cgroup of the processes that map them (/proc/PID/cgroup), each
    PFN counted once per cgroup; cgroup paths as /proc/PID/cgroup prints them. In pages.

    charged[C]: mapped by any scanned process, charged to C.
    mapped_elsewhere[C]: charged to C, mapped by none of C's scanned processes (only by others).
    mapped_from_others[C]: mapped by C's processes, charged to another memory cgroup.
    So C's own pages that it maps are charged - mapped_elsewhere, and the distinct pages its
    processes map are those plus mapped_from_others plus any page charged to no cgroup (the zero
    page; hugetlb where it is not accounted)."""

    charged: dict[str, int] = field(default_factory=dict)
    mapped_elsewhere: dict[str, int] = field(default_factory=dict)
    mapped_from_others: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)  # each PFN once over the whole scan

    def of(self, path: str) -> dict[str, int]:
        return {k: getattr(self, k).get(path, 0) for k in CHARGE_KEYS}


def group_charges(scan: SystemScan, kcgroup: np.ndarray, names: dict[int, str]) -> GroupCharges:
    """`kcgroup`: per page row of the scan, the kpagecgroup inode of its PFN (0: not present, or
    charged to no cgroup); `names`: memcg inode -> path (kernel.cgroup.memcg_dirs). An inode not
    in `names` (a cgroup made meanwhile) is named "?INODE"."""
    res = GroupCharges()
    pg = scan.pages
    member = [p.ident.cgroup for p in scan.procs]
    sel = pmb.present(pg.pm) & (kcgroup != 0)
    inos = np.unique(kcgroup[sel])
    charged_names = {int(i): names.get(int(i), f"?{int(i)}") for i in inos.tolist()}
    paths = sorted(set(member) | set(charged_names.values()))
    if not paths:
        return res
    gid = {p: i for i, p in enumerate(paths)}
    mapper = np.full(len(pg), -1, dtype=np.int64)
    for p in scan.procs:
        mapper[p.lo : p.hi] = gid[p.ident.cgroup]
    rows = np.flatnonzero(sel)
    pfn = (pg.pm[rows] & pmb.PM_PFN_MASK).astype(np.int64)
    lut = np.array([gid[charged_names[int(i)]] for i in inos.tolist()], dtype=np.int64)
    charged = lut[np.searchsorted(inos, kcgroup[rows])]
    n = len(paths)
    # one row per (PFN, mapping cgroup): a page mapped twice in one cgroup counts once
    if len(pfn) and int(pfn.max()) >= (1 << 62) // n:
        raise ValueError("PFN out of range")  # cannot happen: PFNs are 55-bit at most, cgroups few
    key, first = np.unique(pfn * n + mapper[rows], return_index=True)
    upfn, umap, uch = key // n, key % n, charged[first]
    new_pfn = np.ones(len(key), dtype=bool)
    new_pfn[1:] = upfn[1:] != upfn[:-1]  # the first row of each PFN (keys sorted by PFN)
    home_pfns = upfn[umap == uch]  # sorted
    pos = np.minimum(np.searchsorted(home_pfns, upfn), max(len(home_pfns) - 1, 0))
    at_home = (home_pfns[pos] == upfn) if len(home_pfns) else np.zeros(len(upfn), dtype=bool)
    away = umap != uch
    counts = {"charged": np.bincount(uch[new_pfn], minlength=n),
              "mapped_elsewhere": np.bincount(uch[new_pfn & ~at_home], minlength=n),
              "mapped_from_others": np.bincount(umap[away], minlength=n)}
    for k, c in counts.items():
        getattr(res, k).update({p: int(c[i]) for i, p in enumerate(paths) if c[i]})
    res.total = {"charged": int(new_pfn.sum()), "mapped_elsewhere": int((new_pfn & ~at_home).sum()),
                 "mapped_from_others": len(np.unique(upfn[away]))}
    return res


# -- pmaps cgroups --sort ---------------------------------------------------------------------------

# --sort names -> row keys; sizes sort largest first, the path A to Z.
SORT_KEYS = {"charged": "charged", "anon": "anon", "file": "file", "shmem": "shmem", "kernel": "kernel_pages",
             "mapped": "mapped_file", "thp": "anon_thp", "dirty": "dirty", "writeback": "writeback",
             **{k: k for k in LRU_KEYS}, "unevictable": "unevictable", "here": "mapped_here",
             "elsewhere": "mapped_elsewhere", "from_others": "mapped_from_others", "not_mapped": "not_mapped",
             "path": "path"}
NEEDS_SCAN = ("here", "elsewhere", "from_others", "not_mapped")


def sort_rows(rows: list[dict[str, Any]], by: str = "charged") -> list[dict[str, Any]]:
    """Rows by one --sort field (SORT_KEYS): sizes descending, ties and `path` by path ascending."""
    key = SORT_KEYS[by]
    if key == "path":
        return sorted(rows, key=lambda r: r["path"])
    return sorted(rows, key=lambda r: (-(r.get(key) or 0), r["path"]))
