"""What `pmaps exporter` publishes, from one SystemScan: per-group figures (bounded to the top N
groups by PSS plus `other`), page-state counts, the meminfo reconciliation, and why a figure is
missing. Pure: the scan comes in, plain numbers go out.

Every byte figure is the footprint engine's (footprint.py, smaps' rules); the few the engine does
not name are per-page columns of the same scan summed the same way (each mm once, see
system.mm_reps):
- anon / file / shmem: resident pages that are PageAnon / neither anon nor swap-backed (page
  cache) / swap-backed but not anon (tmpfs, shmem, SysV), as /proc/PID/status RssAnon, RssFile
  and RssShmem split them. Without kpageflags, pagemap's "file-page or shared-anon" bit splits
  anon from the rest and shmem cannot be told.
- writeback: PG_writeback. locked: PG_mlocked pages (smaps' "Locked" is the PSS of VM_LOCKED
  VMAs; the page flag is what reclaim obeys).
- pages{state}: page counts per kpageflags class (include/uapi/linux/kernel-page-flags.h).
Nothing here carries a PFN or an address: keys are comm, user, cgroup or pid.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..kernel.kpage import KPF_TABLE
from ..model import Known, Pages, SystemScan
from ..model.state import S_FILE, S_PRESENT, sbit
from . import system as S
from .footprint import finish

U64 = np.uint64
# Every kpageflags bit by name, including those above 31 (mlocked is 33) that the state word leaves out.
KPF_ALL = {name: b for b, name, _, _ in KPF_TABLE}
# Byte figures per group, in exposition order (metric pmaps_<name>_bytes).
BYTES = ("rss", "pss", "uss", "swap", "swap_pss", "anon", "file", "shmem", "anon_thp", "ksm", "hugetlb", "dirty",
         "writeback", "locked", "zero_page")
ENGINE = ("rss", "pss", "uss", "swap", "swap_pss", "anon_thp", "ksm", "hugetlb", "dirty", "zero_page")
STATES = ("active_anon", "inactive_anon", "active_file", "inactive_file", "dirty", "writeback", "unevictable",
          "mlocked", "thp", "ksm", "zero")
OTHER = "other"
BY = ("program", "user", "cgroup", "pid")


@dataclass
class Group:
    """One label value: byte figures (None: unknown), page counts per state, processes."""

    name: str
    fig: dict[str, int | None]
    pages: dict[str, int] | None
    procs: int


@dataclass
class Export:
    """Everything one scan contributes to /metrics."""

    by: str
    groups: list[Group]
    unknown: dict[str, str] = field(default_factory=dict)  # figure -> why
    reconcile: dict[str, int] | None = None
    pages_scanned: int = 0
    processes: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _kbit(kflags: np.ndarray, name: str) -> np.ndarray:
    return (kflags >> U64(KPF_ALL[name]) & U64(1)).astype(bool)


def _columns(pages: Pages, known: Known) -> dict[str, np.ndarray]:
    """The per-page columns the engine does not name (on the pages given: the scan's, or one page
    of each run of equal pages); with kpageflags also shmem, writeback, locked and s:STATE."""
    state = pages.state(known)
    present = sbit(state, S_PRESENT)
    kf = pages.kflags if known.flags else None
    if known.flags and kf is None and not len(pages):
        kf = np.zeros(0, dtype=U64)  # an empty scan: the same columns, empty
    if kf is None:
        anon = present & ~sbit(state, S_FILE)
        return {"anon": anon, "file": present & ~anon}
    zero = _kbit(kf, "zero_page")
    res = present & ~zero & ~_kbit(kf, "huge")
    anon = res & _kbit(kf, "anon")
    backed = _kbit(kf, "swapbacked")
    filec = res & ~anon & ~backed
    active, unev = _kbit(kf, "active"), _kbit(kf, "unevictable")
    mlocked = res & _kbit(kf, "mlocked")
    cols = {"anon": anon, "file": filec, "shmem": res & ~anon & backed,
            "writeback": res & _kbit(kf, "writeback"), "locked": mlocked,
            "s:active_anon": anon & active, "s:inactive_anon": anon & ~active & ~unev,
            "s:active_file": filec & active, "s:inactive_file": filec & ~active & ~unev,
            "s:dirty": res & _kbit(kf, "dirty"), "s:writeback": res & _kbit(kf, "writeback"),
            "s:unevictable": res & unev, "s:mlocked": mlocked, "s:thp": res & _kbit(kf, "thp"),
            "s:ksm": res & _kbit(kf, "ksm"), "s:zero": present & zero}
    return cols


def why_unknown(scan: SystemScan, unknown: set[str]) -> dict[str, str]:
    """A reason for each figure this scan cannot tell."""
    k = scan.known
    if not k.pfn:
        why = "PFNs hidden: kpageflags/kpagecount need CAP_SYS_ADMIN (run as root)"
    elif not (k.flags and k.count):
        why = "/proc/kpageflags or /proc/kpagecount unreadable"
    else:
        why = "not exported by this kernel's interfaces"
    out = {name: why for name in sorted(unknown)}
    if "anon_thp" in out and k.flags:
        out["anon_thp"] = "PMD mappings unknown without PAGEMAP_SCAN (Linux >= 6.7)"
    return out


def export(scan: SystemScan, by: str = "program", top: int = 50, user_of: Callable[[int], str] = str,
           comm_of: Callable[[int, str], str] | None = None) -> Export:
    """Group the scan by `by` (each mm counted once, in the group of its first pid), keep the `top`
    groups by PSS (RSS when PSS is unknown) and sum the rest into `other`. comm_of(pid, comm): the
    name to group a process under by program (default: its comm as scanned)."""
    reps = S.mm_reps(scan)
    flags = scan.known.flags and scan.pages.kflags is not None
    figs = S.page_figures(scan, reps, ENGINE, _columns)
    unknown = set(figs.unknown)
    if not flags:
        unknown |= {"shmem", "writeback", "locked"}
    raw_keys = (*ENGINE, *[k for k in figs.prefix.sums if k not in ENGINE and not k.startswith("s:")])
    acc: dict[str, dict[str, int]] = {}
    nprocs: dict[str, int] = {}
    total = dict.fromkeys(figs.prefix.sums, 0)
    for i, p in enumerate(scan.procs):
        if by == "program":
            name = p.ident.comm if comm_of is None else comm_of(p.pid, p.ident.comm)
        else:
            name = {"user": user_of(p.ident.uid), "cgroup": p.ident.cgroup or "/", "pid": str(p.pid)}[by]
        nprocs[name] = nprocs.get(name, 0) + 1
        s = acc.setdefault(name, dict.fromkeys(figs.prefix.sums, 0))
        if reps[i] != i:
            continue  # this mm is already counted under its first pid
        for k, v in figs.process(i, p).items():
            s[k] += v
            total[k] += v
    rank = "pss" if "pss" not in unknown else "rss"
    names = sorted(acc, key=lambda n: (-acc[n][rank], n))
    keep, rest = names[:top], names[top:]
    if rest:
        o = acc.setdefault(OTHER, dict.fromkeys(figs.prefix.sums, 0)) if OTHER not in keep else acc[OTHER]
        nprocs.setdefault(OTHER, 0)
        for n in rest:
            if n == OTHER:
                continue
            for k, v in acc[n].items():
                o[k] += v
            nprocs[OTHER] += nprocs[n]
        if OTHER not in keep:
            keep.append(OTHER)
    groups = []
    for n in keep:
        s = acc[n]
        fig = finish(s, unknown, raw_keys)
        fig["hugetlb"] = None if "hugetlb" in unknown else fig["hugetlb"]
        pages = {st: s[f"s:{st}"] for st in STATES} if flags else None
        groups.append(Group(n, {k: fig.get(k) for k in BYTES}, pages, nprocs[n]))
    tot = finish(total, unknown, ("pss",))
    ex = Export(by, groups, why_unknown(scan, unknown & set(BYTES)), S.reconcile(scan, tot), len(scan.pages),
                len(scan.procs), {k: len(v) for k, v in scan.skipped.items()})
    if not flags:
        ex.unknown["pages"] = why_unknown(scan, {"pages"})["pages"]
    return ex
