"""Small numpy helpers every layer shares: runs, interval merging, offsets. Pure.

The one home of run coalescing: ranges of pages, lookup segments, pagemap reads, PFN runs,
heatmap intervals and working-set runs all cut or merge with these.
"""
from __future__ import annotations

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # x86-64 and arm64 base pages; pmaps reads 4 KiB pages only


def run_bounds(brk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of the runs of n elements, given brk[i] = "element i+1 starts a run"
    (n - 1 bools). Empty input (n = 0) is passed as brk of length -1: use runs_of_len instead."""
    n = len(brk) + 1
    first = np.concatenate(([0], np.flatnonzero(brk) + 1)).astype(np.int64)
    return first, np.diff(np.append(first, n))


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) of a 1-d array: the sorted distinct values and the
    index of each value among them. A sort and a binary search: np.unique's inverse takes a stable
    argsort, 4x slower on a column of 65,000 figures. (unique_sorted, not np.unique: also faster
    here, and np.unique imports numpy.ma, ~7 ms of every command's start-up.)"""
    uniq = unique_sorted(values)
    return uniq, np.searchsorted(uniq, values)


def consecutive_runs(x: np.ndarray, extra_breaks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of runs where x steps by exactly one (x sorted integers); an optional
    bool array (n - 1) adds breaks. Empty x gives empty arrays."""
    if len(x) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    xi = x.astype(np.int64)
    brk = np.diff(xi) != 1
    if extra_breaks is not None:
        brk |= extra_breaks
    return run_bounds(brk)


def merge_intervals(starts: np.ndarray, ends: np.ndarray, gap: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge intervals sorted by start into segments, joining those less than `gap` apart (and
    overlapping ones). Returns (segment start, segment end, segment index of each interval)."""
    s = starts.astype(np.int64)
    e = ends.astype(np.int64)
    if len(s) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1] + gap
    first = np.flatnonzero(new)
    return s[first], np.maximum.reduceat(e, first), np.cumsum(new) - 1


def seg_offsets(lens: np.ndarray) -> np.ndarray:
    """Start of each segment in the concatenation of segments of these lengths."""
    return np.concatenate(([0], np.cumsum(lens)[:-1])).astype(np.int64)


def arange_runs(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s+l) for each run, vectorised (dtype of starts)."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=starts.dtype)
    if len(starts) == 1:
        return np.arange(total, dtype=starts.dtype) + starts[0]
    offs = seg_offsets(lens).astype(starts.dtype)
    # uint64 arithmetic wraps, and the wrap cancels when the arange is added back
    return np.repeat(starts - offs, lens) + np.arange(total, dtype=starts.dtype)


def unique_sorted(x: np.ndarray) -> np.ndarray:
    """np.unique(x) for a plain array: sorted distinct values. np.unique itself (numpy 2.x) asks
    np.ma.is_masked of its input, which imports numpy.ma (~7 ms of start-up) the first time."""
    s = np.sort(x)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
