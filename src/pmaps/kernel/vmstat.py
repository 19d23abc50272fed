"""/proc/vmstat and the KSM counters (Documentation/admin-guide/mm/ksm.rst): the machine-wide
events that change an anonymous, exclusively mapped page of a process while that process does not
run (its own faults, maps and advice show in its own counters: status.read_mm_key).

Such a page changes only through reclaim (scanning of the anonymous lists, their aging and
deactivation: pgscan_anon, pgsteal_anon, pgrefill, pgdeactivate; pgrefill also counts the
anonymous active list that file-only reclaim still ages, mm/vmscan.c shrink_lruvec), migration
(compaction, NUMA balancing, demotion, memory hotplug: pgmigrate_*, pgdemote*), THP splits and
khugepaged collapses (thp_split_page, thp_collapse_alloc) and ksmd's merging (its sysfs counters,
where /proc/PID/ksm_merging_pages does not put it in each process's own key).
A PMD mapping of a still process is split only by those too (thp_split_pmd also counts every
process's own munmap and mprotect of part of a THP: it moves all the time). Swap-out (pswpout,
zswpout) is not counted: reclaim swaps out what its scans (counted) picked, and MADV_PAGEOUT, which
counts only pswpout (mm/vmscan.c reclaim_folio_list), takes only pages its caller maps alone
(mm/madvise.c madvise_cold_or_pageout_pte_range skips a folio mapped elsewhere), so the caller's
own counters move. The exporter reuses such pages' pagemap entries and kpageflags from its last
scan only while none of these moved. Counters of page-cache and allocation activity (nr_dirtied,
workingset_*, numa_hit, unevictable_pgs_*, ...) move all the time on a busy host and do not touch
those pages: file, shmem and shared pages are read afresh at every scan whatever the counters say.
"""
from __future__ import annotations

import glob
import os

from ..errors import PmapsError
from . import procfs
from .status import KSM_PER_PROCESS

VMSTAT = "/proc/vmstat"
KSM = "/sys/kernel/mm/ksm"
GATE_PREFIXES = ("pgscan_anon", "pgsteal_anon", "pgrefill", "pgdeactivate", "pgmigrate_", "pgdemote",
                 "thp_split_page", "thp_collapse_alloc")
# pgscan_anon/pgsteal_anon exist since Linux 5.8 (include/linux/vm_event_item.h PGSCAN_ANON); an
# older kernel counts scans by reclaimer only (pgscan_kswapd, ...): then every scan counts.
OLD_SCANS = ("pgscan", "pgsteal")
# Of those, the events that give a page a new PFN (or a new mapping) and leave the flags of every
# page they do not move alone: after them a page whose pagemap entry reads the same is the same page
# in the same state. A khugepaged collapse is one (it maps a new huge folio in place of 512 pages).
MOVES = ("pgmigrate_", "pgdemote", "thp_collapse_alloc", "ksm:")
# Of those, the ones that only give pages new PFNs: the same pages, at the same addresses, with the
# same PAGEMAP_SCAN categories (a migration keeps a THP PMD-mapped and a page anon-exclusive,
# mm/migrate.c). After them alone, a still process's pagemap entries at its kept addresses are all
# that need reading; a collapse also changes categories (PAGE_IS_HUGE) and which pages are present.
RELOCATES = ("pgmigrate_", "pgdemote")
# A THP split changes both: the folio's flags (no more THP/compound head) and its mapping (a PMD
# becomes 512 PTEs: PAGEMAP_SCAN's PAGE_IS_HUGE goes), with the same PFNs in the pagemap entries.
SPLITS = ("thp_split_page",)
# A collapse by khugepaged (or MADV_COLLAPSE) maps a new PMD-sized THP in place of 512 pages; before
# Linux 7.2 (khugepaged's mTHP collapse) it makes no smaller folio. Which processes it touched shows
# in their PMD mappings (PAGEMAP_SCAN's PAGE_IS_HUGE) where no smaller size is enabled at all.
COLLAPSES = ("thp_collapse_alloc",)
THP_SIZES = "/sys/kernel/mm/transparent_hugepage"
Gate = tuple[tuple[str, int], ...]
KSM_COUNTERS = ("run", "full_scans", "pages_scanned", "pages_sharing", "pages_shared")


def decode_vmstat(data: bytes) -> dict[str, int]:
    """/proc/vmstat "name value" lines. Pure."""
    out: dict[str, int] = {}
    for line in data.splitlines():
        k, _, v = line.partition(b" ")
        if v.strip().lstrip(b"-").isdigit():
            out[k.decode()] = int(v)
    return out


def gate_of(vmstat: dict[str, int], ksm: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """The counters that must not move for a still process's pages to be unchanged. Pure."""
    prefixes = GATE_PREFIXES if "pgscan_anon" in vmstat else GATE_PREFIXES + OLD_SCANS
    return tuple(sorted((k, v) for k, v in vmstat.items() if k.startswith(prefixes))) + tuple(
        sorted(("ksm:" + k, v) for k, v in ksm.items()))


def split_gate(gate: tuple[tuple[str, int], ...]) -> tuple[Gate, Gate, Gate]:
    """(the counters of events that change pages' flags in place: reclaim's aging and swap-out; of
    THP splits, that change flags and mappings; of events that move pages to new PFNs). Pure."""
    moves = tuple(x for x in gate if x[0].startswith(MOVES))
    splits = tuple(x for x in gate if x[0].startswith(SPLITS))
    return tuple(x for x in gate if not x[0].startswith(MOVES + SPLITS)), splits, moves


def read_gate() -> tuple[tuple[str, int], ...] | None:
    """The gate counters now; None when /proc/vmstat cannot be read (nothing is reused then)."""
    try:
        vm = decode_vmstat(procfs.read_system(VMSTAT))
    except (PmapsError, ValueError):
        return None
    ksm: dict[str, int] = {}
    # Where each process's change key has its own KSM count (status.KSM_PER_PROCESS), ksmd's
    # passes need not stop reuse: a merge shows in the merged process's key.
    for k in () if KSM_PER_PROCESS else KSM_COUNTERS:
        try:
            ksm[k] = int(procfs.read_system(f"{KSM}/{k}"))
        except (PmapsError, ValueError):
            continue  # no KSM (CONFIG_KSM off), or an older kernel without the counter
    return gate_of(vm, ksm)



def collapses_only_to_pmd() -> bool:
    """Whether every THP size but the PMD's is "never" (hugepages-*kB/enabled, Linux 6.8+; a kernel
    without those files has PMD THPs only): then a collapse makes only PMD mappings."""
    try:
        pmd = f"hugepages-{int(procfs.read_system(f'{THP_SIZES}/hpage_pmd_size')) // 1024}kB"
    except (PmapsError, ValueError):
        return False
    for path in glob.glob(f"{THP_SIZES}/hugepages-*kB/enabled"):
        if os.path.basename(os.path.dirname(path)) == pmd:
            continue
        try:
            if b"[never]" not in procfs.read_system(path):
                return False
        except PmapsError:
            return False
    return True
