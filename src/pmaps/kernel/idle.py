"""The idle page bitmap (Documentation/admin-guide/mm/idle_page_tracking.rst, CONFIG_IDLE_PAGE_TRACKING,
4.3+): u64 words, PFN i is bit i % 64 of word i / 64; writing 1 marks the page idle (and clears its
ptes' young bits through an rmap walk); reading says whether it is still idle. Only user LRU pages
take part; a THP is tracked by its head page. Reads and writes must be whole, 8-byte aligned words
(EINVAL otherwise).

`idle_words` and `idle_bits` are pure; `IdleBitmap` reads and writes in word runs (one pread per
run of adjacent words, through kpage's lookup plan), never one syscall per word.
"""
from __future__ import annotations

import os

import numpy as np

from . import procfs
from .caps import IDLE_BITMAP
from .kpage import plan_lookup

U64 = np.uint64


def idle_words(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique word indexes, the mask of these PFNs' bits in each word). Pure."""
    pfns = pfns.astype(U64)
    word = pfns >> U64(6)
    bit = U64(1) << (pfns & U64(63))
    order = np.argsort(word, kind="stable")
    word, bit = word[order], bit[order]
    uniq, first = np.unique(word, return_index=True)
    mask = np.bitwise_or.reduceat(bit, first) if len(bit) else bit
    return uniq, mask


def idle_bits(words: np.ndarray, pfns: np.ndarray) -> np.ndarray:
    """Idle flag of each PFN, from the bitmap word of each PFN (words[i] holds pfns[i]'s word). Pure."""
    return ((words >> (pfns.astype(U64) & U64(63))) & U64(1)).astype(bool)


class IdleBitmap:
    """Read (and, opened for writing, mark) idle bits of PFNs. Needs root."""

    def __init__(self, fd: int, path: str = IDLE_BITMAP) -> None:
        self.fd: int | None = fd
        self.path = path

    @classmethod
    def open(cls, write: bool = False, path: str = IDLE_BITMAP) -> IdleBitmap:
        """Open the bitmap; AccessDenied / PmapsError when it is absent or not readable."""
        with procfs.translate(0, path):
            fd = os.open(path, (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)
        return cls(fd, path)

    @classmethod
    def try_open(cls, path: str = IDLE_BITMAP) -> IdleBitmap | None:
        """The bitmap for reading, or None when this kernel or these privileges have none."""
        fd = procfs.open_path(path)
        return None if fd is None else cls(fd, path)

    def read_words(self, word_idx: np.ndarray) -> np.ndarray:
        """The u64 words at these indexes (any order), read in runs of adjacent words."""
        assert self.fd is not None
        plan = plan_lookup(word_idx.astype(U64))
        buf = np.zeros(plan.total, dtype="<u8")
        mv = buf.data.cast("B")
        pos = 0
        for start, length in zip(plan.seg_start.tolist(), plan.seg_len.tolist()):
            procfs.pread_into(self.fd, mv[pos * 8 : (pos + length) * 8], start * 8, 0, self.path)
            pos += length
        return buf[plan.index]

    def read_idle(self, pfns: np.ndarray) -> np.ndarray:
        """Bool per PFN: still idle."""
        return idle_bits(self.read_words(pfns.astype(U64) >> U64(6)), pfns)

    def mark_idle(self, pfns: np.ndarray) -> None:
        """Set these PFNs' idle bits (other bits of a word are left alone: 0 bits are no-ops)."""
        assert self.fd is not None
        uniq, mask = idle_words(pfns)
        with procfs.translate(0, self.path):
            for w, m in zip(uniq.tolist(), mask.tolist()):  # one 8-byte write per word of 64 PFNs
                os.pwrite(self.fd, int(m).to_bytes(8, "little"), w * 8)

    def close(self) -> None:
        procfs.close(self.fd)
        self.fd = None
