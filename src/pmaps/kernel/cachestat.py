"""cachestat(2) (Linux 6.5+, man 2 cachestat): page-cache state of a file range, in pages.

For a shmem file, nr_evicted counts the pages whose entry in the file is a swap entry (mm/filemap.c
filemap_cachestat: "shmem file - in swap cache" or swapped out), which is what smaps counts as shmem
Swap. Thin reader (ctypes) and a pure bisection that turns range counts into page positions.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..numeric import PAGE_SHIFT

NR_CACHESTAT = 451  # x86-64 and the generic syscall table (arm64)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted",
                                                "nr_recently_evicted")]


class CacheStat(NamedTuple):
    nr_cache: int
    nr_dirty: int
    nr_writeback: int
    nr_evicted: int
    nr_recently_evicted: int


_libc: ctypes.CDLL | None = None


def cachestat(fd: int, first: int, n: int) -> CacheStat:
    """Counts for pages [first, first + n) of the file; OSError (ENOSYS before 6.5)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    rng, st = _Range(first << PAGE_SHIFT, n << PAGE_SHIFT), _Stat()
    if _libc.syscall(ctypes.c_long(NR_CACHESTAT), ctypes.c_uint(fd), ctypes.byref(rng), ctypes.byref(st),
                     ctypes.c_uint(0)) != 0:
        e = ctypes.get_errno() or errno.EIO
        raise OSError(e, os.strerror(e))
    return CacheStat(*(int(getattr(st, f)) for f in CacheStat._fields))


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
