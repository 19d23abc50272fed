"""Swapped-out shmem pages (tmpfs files, memfd, MAP_SHARED anonymous memory, SysV shm).

A shmem page that is swapped out leaves no pte: pagemap shows nothing there, while smaps counts it
in Swap through the shmem mapping (fs/proc/task_mmu.c smap_gather_stats -> shmem_swap_usage /
the shmem pte-hole walk, 6.x): every file index whose xarray entry is a swap entry, including pages
still in the swap cache after MADV_PAGEOUT. The file is reachable as /proc/PID/map_files/START-END
(root: CAP_SYS_ADMIN, Documentation/filesystems/proc.rst). cachestat(2) on it counts exactly those
entries as nr_evicted (mm/filemap.c filemap_cachestat, Linux 6.5+), and a bisection over the VMA's
range finds where they are. Without cachestat: SEEK_DATA/SEEK_HOLE (the file holds the page) and
mincore(2) (in memory) approximate it, missing swapped pages still in the swap cache. Nothing here
faults a page in.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os

import numpy as np

from ..numeric import PAGE_SHIFT, PAGE_SIZE
from . import procfs
from .cachestat import cachestat, locate

TMPFS_MAGIC = 0x01021994  # include/uapi/linux/magic.h; shmem and tmpfs share it


class _Statfs(ctypes.Structure):
    # struct statfs (x86-64/arm64 generic layout): only f_type is read; the rest is padding.
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_Statfs)]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return _libc


def open_mapped(pid: int, start: int, end: int) -> int | None:
    """An fd on the file a VMA maps, through /proc/PID/map_files; None when it cannot be opened
    (not root, no file, the VMA changed)."""
    try:
        return os.open(procfs.proc_path(pid, f"map_files/{start:x}-{end:x}"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def is_shmem(fd: int) -> bool:
    st = _Statfs()
    return _c().fstatfs(fd, ctypes.byref(st)) == 0 and (st.f_type & 0xFFFFFFFF) == TMPFS_MAGIC


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
    if n_in <= 0:
        return out
    vec = np.zeros(n_in, dtype=np.uint8)
    with mmap.mmap(fd, n_in << PAGE_SHIFT, mmap.MAP_SHARED, mmap.PROT_READ, offset=first << PAGE_SHIFT) as mm:
        view = np.frombuffer(mm, dtype=np.uint8)  # a read-only buffer still gives the address
        rc = _c().mincore(ctypes.c_void_p(view.ctypes.data), n_in << PAGE_SHIFT, ctypes.c_void_p(vec.ctypes.data))
        del view  # the buffer export must end before the mapping closes
        if rc != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    out[:n_in] = (vec & 1).astype(bool)
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
        try:
            fd_ = fd  # bound for the closure (mypy: fd is narrowed to int above)
            return locate(lambda lo, ln: cachestat(fd_, lo, ln).nr_evicted, pgoff, n)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
        return swapped_from(data_pages(fd, pgoff, n), incore_pages(fd, pgoff, n))
    except OSError:
        return None
    finally:
        procfs.close(fd)
