"""Swapped-out shmem pages (tmpfs files, memfd, MAP_SHARED anonymous memory, SysV shm).

A shmem page that is swapped out leaves no pte: pagemap shows nothing there, while smaps counts it
in Swap through the shmem mapping (fs/proc/task_mmu.c smap_gather_stats -> shmem_swap_usage /
the shmem pte-hole walk, 6.x): every file index whose xarray entry is a swap entry, including pages
still in the swap cache after MADV_PAGEOUT. The file is reachable as /proc/PID/map_files/START-END
(root: CAP_SYS_ADMIN, Documentation/filesystems/proc.rst). cachestat(2) on it counts exactly those
entries as evicted (mm/filemap.c filemap_cachestat, Linux 6.5+), and a bisection over the VMA's
range finds where they are. Without cachestat: SEEK_DATA/SEEK_HOLE (the file holds the page) and
mincore(2) (in memory) approximate it, missing swapped pages still in the swap cache. Nothing here
faults a page in. cachestat and mincore are pagecache's (the one reader of both).
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Callable

import numpy as np

from ..numeric import PAGE_SHIFT, PAGE_SIZE
from . import procfs
from .pagecache import Cachestat, mincore_map

TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h; shmem and tmpfs share it


class _Statfs(ctypes.Structure):
    # struct statfs (x86-64/arm64 generic layout): only f_type is read; the rest is padding.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


_fstatfs: Callable[..., int] | None = None


def open_mapped(pid: int, start: int, end: int) -> int | None:
    """An fd on the file a VMA maps, through /proc/PID/map_files; None when it cannot be opened
    (not root, no file, the VMA changed)."""
    try:
        return os.open(procfs.proc_path(pid, f"map_files/{start:x}-{end:x}"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def is_shmem(fd: int) -> bool:
    global _fstatfs
    if _fstatfs is None:
        f = ctypes.CDLL(None, use_errno=True).fstatfs
        f.argtypes = [ctypes.c_int, ctypes.POINTER(_Statfs)]
        _fstatfs = f
    st = _Statfs()
    return _fstatfs(fd, ctypes.byref(st)) == 0 and (st.f_type & 0xFFFFFFFF) == TMPFS_MAGIC


def locate(count: Callable[[int, int], int], first: int, n: int) -> np.ndarray:
    """Bool per page of [first, first + n): where `count(lo, length)` (a range count, e.g. evicted
    pages) is non-zero, found by bisection: O(runs x log n) calls, not one per page. Pure."""
    out = np.zeros(n, dtype=bool)
    todo = [(first, n, count(first, n))]
    while todo:
        lo, ln, c = todo.pop()
        if c <= 0:
            continue
        if c >= ln:
            out[lo - first:lo - first + ln] = True
            continue
        half = ln // 2
        todo.append((lo, half, count(lo, half)))
        todo.append((lo + half, ln - half, c - todo[-1][2]))
    return out


def data_pages(fd: int, first: int, n: int) -> np.ndarray:
    """Bool per page of [first, first + n) (file page indexes): the file holds data there."""
    out = np.zeros(n, dtype=bool)
    pos, end = first << PAGE_SHIFT, (first + n) << PAGE_SHIFT
    while pos < end:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after pos
                break
            raise
        if d >= end:
            break
        h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
        out[(d >> PAGE_SHIFT) - first:((h + PAGE_SIZE - 1) >> PAGE_SHIFT) - first] = True
        pos = h
    return out


def incore_pages(fd: int, first: int, n: int) -> np.ndarray:
    """Bool per page of [first, first + n): in memory (mincore on a PROT_READ shared mapping)."""
    size = os.fstat(fd).st_size
    n_in = max(0, min(n, ((size + PAGE_SIZE - 1) >> PAGE_SHIFT) - first))
    out = np.zeros(n, dtype=bool)
    if n_in > 0:
        with mmap.mmap(fd, n_in << PAGE_SHIFT, mmap.MAP_SHARED, mmap.PROT_READ, offset=first << PAGE_SHIFT) as mm:
            out[mincore_map(mm, n_in << PAGE_SHIFT).astype(np.int64)] = True
    return out


def swapped_from(data: np.ndarray, incore: np.ndarray) -> np.ndarray:
    """Pages the file holds but not in memory: in swap. Pure."""
    return data & ~incore


def swapped_pages(pid: int, start: int, end: int, pgoff: int) -> np.ndarray | None:
    """Bool per page of a VMA: its shmem page is in swap. None when the VMA is not shmem or cannot
    be read (not root)."""
    fd = open_mapped(pid, start, end)
    if fd is None:
        return None
    try:
        if not is_shmem(fd):
            return None
        n = (end - start) >> PAGE_SHIFT
        stat = Cachestat()
        try:
            return locate(lambda lo, ln: stat(fd, lo << PAGE_SHIFT, ln << PAGE_SHIFT).evicted or 0, pgoff, n)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
        return swapped_from(data_pages(fd, pgoff, n), incore_pages(fd, pgoff, n))
    except OSError:
        return None
    finally:
        procfs.close(fd)
