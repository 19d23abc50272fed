"""The file and shmem pages every process maps, by PFN, for `pmaps cgroups`.

Reads far less than `scan_system`: only the VMAs that can hold such pages (a file behind them, or
shared), only their present pages (PAGEMAP_SCAN, or the whole VMA on kernels without it), and
no kpageflags/kpagecount (the caller's pass over physical memory has what it needs). A process
whose status says it maps no file or shmem page (RssFile + RssShmem 0) is not opened at all.
So an 8 GiB anonymous process costs a status read and a maps read, not 2 million pagemap
entries and their kpage lookups. Skipped processes are counted as in scan_system.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import AccessDenied, KernelThread, NoSuchProcess, ProcessGone, Unsupported
from ..kernel import caps as capsmod
from ..kernel import pagemap as pmb
from ..kernel import procfs
from ..kernel.maps import PAGE_SHIFT, Vma
from ..kernel.pagemap import CAT_PRESENT
from ..kernel.status import Ident, read_ident_status
from ..model.mapped import MappedScan
from ..numeric import arange_runs
from .parallel import ordered_map, reader_threads
from .process import Options, Process

TOP_PRESENT_FILE = np.uint8((1 << (pmb.PM_PRESENT - 56)) | (1 << (pmb.PM_FILE - 56)))
U64 = np.uint64
_Row = tuple[np.ndarray, np.ndarray, list[str]]  # pfn (int64), VMA index per page (int32), VMA paths


def can_map_file_pages(v: Vma) -> bool:
    """Whether pagemap may mark pages of this VMA FILE (a file page, or shared anonymous memory;
    Documentation/admin-guide/mm/pagemap.rst bit 61): it has an inode or is shared. A private
    anonymous VMA holds anonymous pages and the zero page, which no memcg is charged for."""
    return v.inode != 0 or v.perms[3:4] == "s"


def scan_mapped(caps: capsmod.Caps | None = None) -> MappedScan:
    """Every process's present file/shmem pages (PFN, process, VMA path). Root (PFNs)."""
    caps = caps or capsmod.probe()
    me = os.getpid()
    opts = Options(flags=False, counts=False, file_vmas=True)

    def one(pid: int) -> tuple[str, int, Ident | None, _Row | None]:
        if pid == me or procfs.is_kernel_thread(pid):
            return "skip", pid, None, None
        try:
            ident, st = read_ident_status(pid)
            if not st.get("RssFile", 1) and not st.get("RssShmem", 1):
                return "ok", pid, ident, None
            with Process(pid, opts, caps) as proc:
                return "ok", pid, ident, _file_pages(proc)
        except KernelThread:
            return "skip", pid, None, None
        except AccessDenied:
            return "denied", pid, None, None
        except ProcessGone:
            return "exited", pid, None, None
        except NoSuchProcess:
            return "missing", pid, None, None
        except Unsupported:  # a zombie: its memory is gone
            return "exited", pid, None, None

    res = MappedScan.empty()
    pfns, vmas, counts, offsets = [], [], [], []
    readers = reader_threads()  # two, one on a single CPU
    for status, pid, ident, row in ordered_map(one, procfs.list_pids(), workers=readers, ahead=4 * readers):
        if status != "ok":
            if status != "skip":
                res.skipped[status].append(pid)
            continue
        assert ident is not None
        if row is None or not len(row[0]):
            continue
        pfn, vma, names = row
        pfns.append(pfn)
        vmas.append(vma)
        counts.append(len(pfn))
        offsets.append(len(res.paths))  # this process's VMA paths follow the others'
        res.paths += names
        res.procs.append(ident)
    if pfns:
        n = np.array(counts, dtype=np.int64)
        res.pfn = np.concatenate(pfns)
        res.proc = np.repeat(np.arange(len(n), dtype=np.int32), n)
        res.mapping = np.concatenate(vmas) + np.repeat(np.array(offsets, dtype=np.int32), n)
    return res


def _file_pages(proc: Process) -> _Row:
    """PFN and VMA index of the present FILE pages of the VMAs that can hold them; the VMA paths.

    One PAGEMAP_SCAN walk per run of adjacent such VMAs (a library's segments are one run)."""
    vmas = [v for v in proc.vmas if can_map_file_pages(v)]
    names = [v.path or "[anon]" for v in vmas]
    none = np.zeros(0, dtype=np.int64)
    if not vmas:
        return none, none, names
    vs = np.array([v.start for v in vmas], dtype=np.int64) >> PAGE_SHIFT
    ve = np.array([v.end for v in vmas], dtype=np.int64) >> PAGE_SHIFT
    if proc.scanning:
        first = np.flatnonzero(np.r_[True, vs[1:] != ve[:-1]])  # the first VMA of each run
        last = np.r_[first[1:], len(vmas)] - 1
        regs = [proc.regions(int(vs[a]) << PAGE_SHIFT, int(ve[b]) << PAGE_SHIFT, returns=CAT_PRESENT)
                for a, b in zip(first.tolist(), last.tolist())]
        r = np.concatenate(regs)
        r = r[(r[:, 2] & U64(CAT_PRESENT)) != 0]
        starts, ends = (r[:, 0] >> U64(PAGE_SHIFT)).astype(np.int64), (r[:, 1] >> U64(PAGE_SHIFT)).astype(np.int64)
    else:  # no PAGEMAP_SCAN (before 6.7): the whole VMAs' entries
        starts, ends = vs, ve
    if not len(starts):
        return none, none, names
    pm = proc.entries(starts.astype(U64), ends.astype(U64))
    # present (bit 63) and FILE (bit 61), tested on the entries' top bytes: one pass over bytes
    keep = np.flatnonzero((pmb.top_byte(pm) & TOP_PRESENT_FILE) == TOP_PRESENT_FILE)
    vpn = arange_runs(starts, ends - starts)[keep]
    vma = (np.searchsorted(vs, vpn, side="right") - 1).astype(np.int32)
    return (pm[keep] & pmb.PM_PFN_MASK).view(np.int64), vma, names
