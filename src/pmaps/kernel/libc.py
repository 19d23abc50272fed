"""glibc calls that are not about /proc: returning freed heap to the kernel, and its arenas."""
from __future__ import annotations

import ctypes
import functools

M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # The process's own symbols (dlopen(NULL)): the C library Python runs on, glibc or musl.
    # Not ctypes.util.find_library("c"): its import (shutil, subprocess, tempfile...) and the
    # search took ~5 ms of every `pmaps watch` and `pmaps record`.
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def malloc_trim() -> bool:
    """malloc_trim(0): give the free memory of every malloc arena back to the kernel (glibc >= 2.8
    trims all arenas, not only the top of the main heap). A long-running scanner that builds and drops
    ~100 MB of numpy columns per scan otherwise keeps that much resident between scans (measured:
    95 MiB -> 38 MiB after a scan of 1.2 M pages). False where libc has no malloc_trim (musl)."""
    try:
        libc = _libc()
        return libc is not None and bool(libc.malloc_trim(0))
    except AttributeError:
        return False


def malloc_arena_max(n: int) -> bool:
    """mallopt(M_ARENA_MAX, n): threads that first allocate from now on share at most n malloc
    arenas. glibc gives each new thread an arena of its own (up to 8 per CPU), and the free
    memory left in them adds up: for a process that owns its memory choices (a command), not a
    library caller's. False where libc has no mallopt (musl)."""
    try:
        libc = _libc()
        return libc is not None and bool(libc.mallopt(M_ARENA_MAX, n))
    except AttributeError:
        return False


PR_SET_THP_DISABLE = 41  # include/uapi/linux/prctl.h (Linux 3.15)


def disable_thp() -> bool:
    """prctl(PR_SET_THP_DISABLE, 1): no transparent huge pages for this process, neither at fault nor
    by khugepaged (mm/khugepaged.c checks the mm's MMF_DISABLE_THP). numpy madvises its large arrays
    MADV_HUGEPAGE (numpy/_core/src/multiarray/alloc.c), so a long-running scanner would otherwise
    have khugepaged collapse and split its own columns scan after scan: machine-wide events
    (thp_collapse_alloc, thp_split_page) that a scanner keeping other processes' pages between scans
    must treat as "any page may have moved". False where the kernel or libc refuses it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
