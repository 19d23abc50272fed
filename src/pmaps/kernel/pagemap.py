"""The /proc/PID/pagemap entry layout (Documentation/admin-guide/mm/pagemap.rst). Pure, numpy."""
from __future__ import annotations

import numpy as np

PM_PFN_MASK = np.uint64((1 << 55) - 1)  # bits 0-54; zeroed without CAP_SYS_ADMIN since 4.2
PM_SWAP_TYPE_MASK = np.uint64(0x1F)  # bits 0-4 when swapped
PM_SOFT_DIRTY = 55
PM_EXCLUSIVE = 56  # "page exclusively mapped", since 4.2
PM_UFFD_WP = 57  # since 5.13
PM_GUARD = 58  # guard region, since 6.15
PM_FILE = 61  # file page or shared anon, since 3.5
PM_SWAPPED = 62
PM_PRESENT = 63

# The pagemap bits pmaps reports, in the order of the --flags=all letters and JSON names.
PM_BITS: tuple[tuple[int, str, str], ...] = (
    (PM_PRESENT, "present", "p"),
    (PM_SWAPPED, "swapped", "w"),
    (PM_FILE, "file", "F"),
    (PM_EXCLUSIVE, "exclusive", "1"),
    (PM_SOFT_DIRTY, "soft_dirty", "f"),
    (PM_UFFD_WP, "uffd_wp", "k"),
    (PM_GUARD, "guard", "j"),
)
ENTRY = np.dtype("<u8")


def decode_pagemap(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Entries of a pagemap read: one little-endian u64 per virtual page."""
    if len(data) % 8:
        raise ValueError(f"pagemap data of {len(data)} bytes is not a multiple of 8")
    return np.frombuffer(data, dtype=ENTRY)


def top_byte(entries: np.ndarray) -> np.ndarray:
    """Bits 56-63 of each entry (exclusive, uffd-wp, guard, file, swapped, present) as a
    strided uint8 view: no copy, and 8x less memory traffic for the tests on them."""
    return np.ascontiguousarray(entries).view(np.uint8)[7::8]


TOP_PRESENT = 0x80  # bit 63
TOP_SWAPPED = 0x40  # bit 62
TOP_EXCLUSIVE = 0x01  # bit 56


def bit(entries: np.ndarray, n: int) -> np.ndarray:
    """Boolean column of bit n."""
    return ((entries >> np.uint64(n)) & np.uint64(1)).astype(bool)


def present(entries: np.ndarray) -> np.ndarray:
    # Bit 63 is the top bit: one unsigned compare.
    return entries >= np.uint64(1 << PM_PRESENT)


def swapped(entries: np.ndarray) -> np.ndarray:
    return bit(entries, PM_SWAPPED)


def populated(entries: np.ndarray) -> np.ndarray:
    """Present or swapped (bit 63 or 62: the value is at least 2**62)."""
    return entries >= np.uint64(1 << PM_SWAPPED)


def pfn(entries: np.ndarray) -> np.ndarray:
    """PFN of present entries, 0 elsewhere (and 0 everywhere without CAP_SYS_ADMIN)."""
    return np.where(present(entries), entries & PM_PFN_MASK, np.uint64(0))


def swap_type(entries: np.ndarray) -> np.ndarray:
    return np.where(swapped(entries), entries & PM_SWAP_TYPE_MASK, np.uint64(0))


def swap_offset(entries: np.ndarray) -> np.ndarray:
    return np.where(swapped(entries), (entries & PM_PFN_MASK) >> np.uint64(5), np.uint64(0))
