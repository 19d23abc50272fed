"""Pagemap entries with the "swapped" bit that are not swap: guard markers, uffd-wp markers, migration
entries (pagemap.not_swap). smaps never counts them as Swap; nor does pmaps. Also the unprivileged
figures pagemap cannot tell: SwapPss (swap entries hidden) and USS of a PMD-mapped THP shared in part."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from helpers import NOBODY, PAGE, json_vmas, pmaps_cmd, smaps_by_start, text_blocks
from pmaps.kernel import pagemap as pmb

HERE = Path(__file__).resolve().parent


# -- the decoder, on bytes ------------------------------------------------------------------
def _entry(*bits: int, frame: int = 0) -> int:
    return sum(1 << b for b in bits) | frame


SWAP, UFFD, GUARD, PRESENT, EXCL = 62, 57, 58, 63, 56
CASES = [  # (entry, a swap pte?)
    (_entry(SWAP, frame=0 | (5 << 5)), True),  # swap file type 0, offset 5 (root)
    (_entry(SWAP, frame=3 | (7 << 5)), True),  # type 3
    (_entry(SWAP, UFFD, frame=1 | (9 << 5)), True),  # a swapped page under uffd-wp (root)
    (_entry(SWAP), True),  # without root: the frame is hidden, bit 62 alone is swap
    (_entry(SWAP, GUARD, frame=31 | (4 << 5)), False),  # a guard marker (root)
    (_entry(SWAP, GUARD), False),  # a guard marker without root: bit 58 says it
    (_entry(SWAP, UFFD, frame=31 | (1 << 5)), False),  # a uffd-wp marker (root: SWP_PTE_MARKER)
    (_entry(SWAP, frame=28 | (0x1234 << 5)), False),  # a migration entry (root: a special type)
    (_entry(SWAP, frame=24 | (1 << 5)), False),  # the lowest type that may be special
    (_entry(SWAP, frame=23 | (1 << 5)), True),  # and the highest a swap file always may have
    (_entry(PRESENT, EXCL, frame=0x1234), False),  # present
    (0, False),
]


def test_swap_ptes_on_bytes():
    data = struct.pack(f"<{len(CASES)}Q", *(e for e, _ in CASES))
    pm = pmb.decode_pagemap(data)
    want = np.array([w for _, w in CASES])
    assert (pmb.swapped(pm) == want).all()
    assert (pmb.not_swap(pm) == (pmb.bit(pm, SWAP) & ~want)).all()
    assert pmb.any_swapped_bit(pm) and not pmb.any_swapped_bit(pm[-2:]) and not pmb.any_swapped_bit(pm[:0])


def test_marker_state_has_no_swapped_bit():
    from pmaps.model import Known, Pages
    from pmaps.model.state import S_GUARD, S_SWAPPED, S_UFFD_WP

    pm = pmb.decode_pagemap(struct.pack(f"<{len(CASES)}Q", *(e for e, _ in CASES)))
    pages = Pages(np.arange(len(pm), dtype=np.uint64), pm.copy(), np.zeros(len(pm), dtype=np.uint16))
    st = pages.state(Known(pfn=True))
    assert [bool(s >> S_SWAPPED & 1) for s in st.tolist()] == [w for _, w in CASES]
    assert bool(st[4] >> S_GUARD & 1) and bool(st[6] >> S_UFFD_WP & 1)  # the markers keep their own bits


# -- real markers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def markers_bin() -> Iterator[Path]:
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    d = Path(tempfile.mkdtemp(prefix="pmaps-markers-"))
    try:
        d.chmod(0o755)  # nobody runs it too
        out = d / "markers"
        r = subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "markers.c")], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot build tests/markers.c: {r.stderr.strip()[:200]}")
        yield out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _start(binary: Path, user: bool) -> tuple[subprocess.Popen[str], dict[str, int]]:
    p = subprocess.Popen([*(NOBODY if user else []), str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    made = {}
    for line in p.stdout:  # type: ignore[union-attr]
        if line.startswith("READY"):
            break
        w = line.split()
        if w[0] != "SKIP":
            made[w[0]] = int(w[1], 16)
    return p, made


def _stop(p: subprocess.Popen[str]) -> None:
    p.stdin.close()  # type: ignore[union-attr]
    p.wait(10)
    p.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("user", [False, True], ids=["root", "nobody"])
def test_markers_are_not_swap(markers_bin, user):
    """Guard markers (6.13+) and uffd-wp markers (6.4+ for anonymous WP_UNPOPULATED) are neither
    resident nor swapped: Rss and Swap as smaps says, per VMA and in total, and `--swap` lists no
    range for them. Without root a uffd-wp marker cannot be told from a swapped page under uffd-wp
    (the swap entry is hidden): Swap is unknown (null) there, never a wrong number."""
    if os.geteuid() != 0:
        pytest.skip("needs root (and setpriv for the unprivileged run)")
    p, made = _start(markers_bin, user)
    try:
        if not made:
            pytest.skip("no guard regions or uffd-wp markers on this kernel")
        sm = smaps_by_start(p.pid)
        for start in made.values():
            assert sm[start]["Swap"] == 0
        for env in ({}, {"PMAPS_NO_SCAN": "1"}):
            doc = json.loads(pmaps_cmd("--summary", "--format", "json", str(p.pid), user=user, env=env).stdout)
            (proc,) = doc["processes"]
            vmas = {v["start"]: v for v in proc["vmas"]}
            uffd = {"uffd_anon", "uffd_shm"} & set(made)
            for name, start in made.items():
                assert vmas[start]["rss"] == sm[start]["Rss"], (name, env)
                if user and uffd:
                    assert vmas[start]["swap"] is None, (name, env)
                else:
                    assert vmas[start]["swap"] == 0 and vmas[start]["swap_pss"] == 0, (name, env)
            if user and uffd:
                assert proc["total"]["swap"] is None and proc["total"]["swap_pss"] is None
            else:
                assert proc["total"]["swap"] == 0 and proc["total"]["swap_pss"] == 0
            ranges = json_vmas(pmaps_cmd("--swap", "--format", "json", str(p.pid), user=user, env=env).stdout)
            for name, start in made.items():
                got = ranges[start]["ranges"]
                assert sum(r["count"] for r in got) * PAGE == sm[start]["Rss"] or (user and name in uffd), (name, env)
                if not user:
                    assert not any("swapped" in r["names"] for r in got), (name, env)
        if "guard" in made:  # the guard pages are a hole in the text view too
            text = pmaps_cmd("--swap", str(p.pid), user=user).stdout
            (rows,) = [r for line, r in text_blocks(text) if line.startswith(f"{made['guard']:08x}-")]
            assert rows[0][:2] == (0, 8) and rows[1][0] == 12  # pages 8-11 are guards
    finally:
        _stop(p)


# -- unprivileged: what pagemap hides -------------------------------------------------------
THP_HALF_SHARED = textwrap.dedent(r"""
    import ctypes, mmap, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    M2 = 2 << 20
    base = libc.mmap(None, 2 * M2, 3, 0x22, -1, 0)
    a = (base + M2 - 1) & ~(M2 - 1)
    libc.madvise(a, M2, 14)  # MADV_HUGEPAGE
    ctypes.memset(a, 0x5A, M2)
    pid = os.fork()
    if pid == 0:
        libc.munmap(a + (M2 // 2 if sys.argv[1] == "first" else 0), M2 // 2)  # the child keeps one half
        print(os.getpid(), flush=True)
        time.sleep(120)
        os._exit(0)
    time.sleep(0.2)
    print(a, flush=True)
    sys.stdin.readline()
    os.kill(pid, 9)
""")


@pytest.mark.parametrize("kept", ["first", "second"])
def test_thp_shared_in_part(kept):
    """A PMD-mapped THP half of which a forked child also maps (by ptes, its PMD split): smaps
    counts 1 MiB private and 1 MiB shared. pagemap's bit 56 there is the head page's for all 512
    pages (6.x pagemap_pmd_range_thp): clear when the child kept the first half (the head), set
    when it kept the second. As root every page's map count is read: exact both ways (before, the
    second way read none and said 2 MiB private). Without map counts, the first way, USS and
    Shared are unknown (null), never 0 and 2 MiB; the second way the bit says private and pagemap
    cannot tell better (documented: docs/footprints.md)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (and setpriv for the unprivileged run)")
    p = subprocess.Popen([*NOBODY, sys.executable, "-c", THP_HALF_SHARED, kept], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()  # type: ignore[union-attr]  # the child's pid
        a = int(p.stdout.readline())  # type: ignore[union-attr]
        sm = {s: v for s, v in smaps_by_start(p.pid).items() if s <= a < s + v["Size"]}
        ((start, k),) = sm.items()
        if k.get("AnonHugePages", 0) < 2 << 20:
            pytest.skip("no THP here")
        private = k["Private_Clean"] + k["Private_Dirty"]
        shared = k["Shared_Clean"] + k["Shared_Dirty"]
        assert private >= 1 << 20 and shared >= 1 << 20  # the case: shared in part
        for user in (False, True):
            (proc,) = json.loads(pmaps_cmd("--summary", "--format", "json", str(p.pid), user=user).stdout)["processes"]
            v = {x["start"]: x for x in proc["vmas"]}[start]
            if user and kept == "first":
                assert v["uss"] is None and v["shared"] is None and proc["total"]["uss"] is None
                assert v["rss"] == k["Rss"]
            elif user:
                # The documented limit; a kernel whose PMD bit is folio_maybe_mapped_shared()'s (later
                # than 6.18) clears it: unknown then.
                assert (v["uss"], v["shared"]) in ((2 << 20, 0), (None, None)) and v["rss"] == k["Rss"]
            else:
                assert (v["uss"], v["shared"], v["rss"], v["pss"]) == (private, shared, k["Rss"], k["Pss"])
        # The 2007 view's map counts too: 256 pages mapped twice, 256 once.
        doc = json_vmas(pmaps_cmd("--format", "json", str(p.pid)).stdout)[start]["ranges"]
        assert [sum(r["count"] for r in doc if r["mapcount"] == m) for m in (1, 2)] == [256, 256]
    finally:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(10)
        p.stdout.close()  # type: ignore[union-attr]
