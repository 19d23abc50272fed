"""Writers that reset access state: /proc/PID/clear_refs and the idle page bitmap.

clear_refs (Documentation/filesystems/proc.rst): writing 1 clears, for every page mapped by the
process, the pte young bit, the folio's young (idle-tracking) flag and PG_referenced
(fs/proc/task_mmu.c clear_refs_pte_range, 6.x); 2 anon pages only, 3 file pages only,
4 soft-dirty bits, 5 the peak RSS (VmHWM).

The idle bitmap (Documentation/admin-guide/mm/idle_page_tracking.rst, CONFIG_IDLE_PAGE_TRACKING,
4.3+): u64 words, PFN i is bit i%64 of word i/64; writing 1 marks the page idle (and clears its
ptes' young bits through an rmap walk); reading says whether it is still idle. Only user LRU pages
take part; a THP is tracked by its head page. Reads and writes must be 8-byte aligned.
"""
from __future__ import annotations

import os

import numpy as np

from . import procfs
from .caps import IDLE_BITMAP

CLEAR_REFERENCED = 1
CLEAR_SOFT_DIRTY = 4


def clear_refs(pid: int, what: int = CLEAR_REFERENCED) -> None:
    """Write `what` to /proc/PID/clear_refs (needs ptrace access: the owner or root)."""
    path = procfs.proc_path(pid, "clear_refs")
    with procfs.translate(pid, path, started=True):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"%d\n" % what)
        finally:
            os.close(fd)


def idle_words(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique word indexes, the mask of our PFNs' bits in each word). Pure."""
    pfns = pfns.astype(np.uint64)
    word = pfns >> np.uint64(6)
    bit = np.uint64(1) << (pfns & np.uint64(63))
    order = np.argsort(word, kind="stable")
    word, bit = word[order], bit[order]
    uniq, first = np.unique(word, return_index=True)
    mask = np.bitwise_or.reduceat(bit, first) if len(bit) else bit
    return uniq, mask


def idle_bits(words: np.ndarray, pfns: np.ndarray) -> np.ndarray:
    """Bool per PFN: its bit in the words read back (word index order as from idle_words). Pure."""
    uniq, _ = idle_words(pfns)
    idx = np.searchsorted(uniq, pfns.astype(np.uint64) >> np.uint64(6))
    return ((words[idx] >> (pfns.astype(np.uint64) & np.uint64(63))) & np.uint64(1)).astype(bool)


class IdleBitmap:
    """Mark PFNs idle and read them back, batching word runs into few syscalls."""

    def __init__(self, path: str = IDLE_BITMAP) -> None:
        self.path = path
        with procfs.translate(0, path):
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def mark_idle(self, pfns: np.ndarray) -> None:
        uniq, mask = idle_words(pfns)
        with procfs.translate(0, self.path):
            for w, m in zip(uniq.tolist(), mask.tolist()):  # one 8-byte write per word of 64 PFNs
                os.pwrite(self.fd, int(m).to_bytes(8, "little"), w * 8)

    def read_idle(self, pfns: np.ndarray) -> np.ndarray:
        uniq, _ = idle_words(pfns)
        words = np.zeros(len(uniq), dtype=np.uint64)
        with procfs.translate(0, self.path):
            for i, w in enumerate(uniq.tolist()):
                words[i] = int.from_bytes(os.pread(self.fd, 8, w * 8), "little")
        return idle_bits(words, pfns)

    def close(self) -> None:
        procfs.close(self.fd)
