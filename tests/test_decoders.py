"""Pure decoders on byte strings."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pmaps.kernel import pagemap as pmb
from pmaps.kernel.kpage import decode_u64, plan_lookup
from pmaps.kernel.maps import MapsFormatError, Vma, decode_maps, decode_maps_line
from pmaps.kernel.pagemap import ARG, decode_regions
from pmaps.kernel.smaps import decode_rollup, decode_smaps, decode_smaps_column

MAPS = (
    b"55cc6aa05000-55cc6aa06000 r--p 00000000 fe:00 26723                      /usr/bin/python3.11\n"
    b"7effea1ff000-7effea3ff000 rw-p 00000000 00:00 0 \n"
    b"7ffd41c04000-7ffd41c25000 rw-p 00000000 00:00 0                          [stack]\n"
    b"7f0000000000-7f0000001000 rw-s 00000000 00:01 1234                       /memfd:a b (deleted)\n"
    b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
)


def test_decode_maps_fields():
    v = decode_maps(MAPS)
    assert len(v) == 5
    assert v[0] == Vma(0x55CC6AA05000, 0x55CC6AA06000, "r--p", 0, "fe:00", 26723, "/usr/bin/python3.11")
    assert v[1].path == "" and v[1].pages == 512
    assert v[2].path == "[stack]"
    assert v[3].path == "/memfd:a b (deleted)"  # inner spaces and the suffix kept
    assert v[4].start == 0xFFFFFFFFFF600000


def test_maps_line_roundtrip_matches_kernel_padding():
    for raw in MAPS.decode().splitlines():
        assert decode_maps_line(raw).maps_line() == raw.rstrip()


def test_maps_line_real_process():
    raw = open("/proc/self/maps").read().splitlines()
    assert [decode_maps_line(r).maps_line() for r in raw] == [r.rstrip() for r in raw]


@pytest.mark.parametrize("bad", ["", "zzz r--p", "0-1000 r--p 0 fe:00", "x-1000 r--p 0 fe:00 1"])
def test_maps_bad_lines(bad):
    with pytest.raises(MapsFormatError):
        decode_maps_line(bad)


def test_pagemap_bits():
    present = (1 << 63) | (1 << 56) | 0x1234
    swapped = (1 << 62) | (77 << 5) | 3
    filepg = (1 << 63) | (1 << 61) | (1 << 55) | 0x99
    e = pmb.decode_pagemap(struct.pack("<4Q", present, swapped, filepg, 0))
    assert e.dtype == np.dtype("<u8")
    assert pmb.present(e).tolist() == [True, False, True, False]
    assert pmb.swapped(e).tolist() == [False, True, False, False]
    assert pmb.populated(e).tolist() == [True, True, True, False]
    assert pmb.pfn(e).tolist() == [0x1234, 0, 0x99, 0]
    assert pmb.swap_type(e).tolist() == [0, 3, 0, 0]
    assert pmb.swap_offset(e).tolist() == [0, 77, 0, 0]
    assert pmb.bit(e, pmb.PM_EXCLUSIVE).tolist() == [True, False, False, False]
    assert pmb.bit(e, pmb.PM_FILE).tolist() == [False, False, True, False]
    assert pmb.bit(e, pmb.PM_SOFT_DIRTY).tolist() == [False, False, True, False]
    with pytest.raises(ValueError):
        pmb.decode_pagemap(b"1234567")


def test_decode_u64():
    assert decode_u64(struct.pack("<2Q", 5, 1 << 60)).tolist() == [5, 1 << 60]
    with pytest.raises(ValueError):
        decode_u64(b"123")


def _check_plan(pfns, gap=64):
    from pmaps.kernel import native

    pfns = np.array(pfns, dtype=np.uint64)
    plan = plan_lookup(pfns, gap, core=native.load())  # the core unless PMAPS_PURE (kpage_path)
    # Simulate the file: entry value = PFN * 3 + 1.
    buf = np.concatenate([np.arange(s, s + n, dtype=np.int64) * 3 + 1 for s, n in zip(plan.seg_start, plan.seg_len)])
    assert (buf[plan.index] == pfns.astype(np.int64) * 3 + 1).all()
    return plan


def test_plan_lookup_contiguous_is_one_read(kpage_path):
    plan = _check_plan(range(1000, 3000))
    assert plan.seg_start.tolist() == [1000] and plan.seg_len.tolist() == [2000]


def test_plan_lookup_unsorted_duplicates_and_far_runs(kpage_path):
    pfns = [10, 11, 12, 5_000_000, 5_000_001, 10, 11, 50, 2_000_000]
    plan = _check_plan(pfns)
    assert len(plan.seg_start) == 3  # 10..50 merged through the small gap, two far runs alone
    assert plan.total < 200


def test_plan_lookup_dense_becomes_whole_span(kpage_path):
    rng = np.random.default_rng(1)
    pfns = rng.permutation(np.arange(0, 100_000, 2))
    plan = _check_plan(pfns, gap=1)
    assert len(plan.seg_start) == 1


def test_plan_lookup_empty():
    assert plan_lookup(np.zeros(0, dtype=np.uint64)).total == 0


def test_scan_arg_and_regions():
    assert ARG.size == 96  # struct pm_scan_arg
    raw = struct.pack("<6Q", 0x1000, 0x3000, 8, 0x5000, 0x6000, 16)
    r = decode_regions(raw, 2)
    assert r.tolist() == [[0x1000, 0x3000, 8], [0x5000, 0x6000, 16]]


SMAPS = b"""\
00400000-00452000 r-xp 00000000 fe:00 123 /bin/x
Size:                328 kB
Rss:                 300 kB
Pss:                 150 kB
Swap:                  0 kB
THPeligible:    0
VmFlags: rd ex mr mw me
7f0000000000-7f0000200000 rw-p 00000000 00:00 0
Size:               2048 kB
AnonHugePages:      2048 kB
"""


def test_decode_smaps():
    rows = decode_smaps(SMAPS)
    assert rows[0] == {"start": 0x400000, "end": 0x452000, "Size": 328 << 10, "Rss": 300 << 10, "Pss": 150 << 10,
                       "Swap": 0, "THPeligible": 0}
    assert rows[1]["AnonHugePages"] == 2 << 20
    assert decode_rollup(SMAPS)["Rss"] == 300 << 10


def test_decode_smaps_field():
    """The two-scan decoder of one field agrees with decode_smaps, also where it falls back to it (a
    block without the field or without VmFlags)."""
    whole = SMAPS + b"VmFlags: rd wr mr mw me ac\n"
    for data in (whole, SMAPS, whole + whole.replace(b"00400000-", b"00500000-", 1)[:60], b"", whole[:40]):
        for name in ("Size", "Rss", "AnonHugePages", "Referenced"):
            want = {r["start"]: r.get(name, 0) for r in decode_smaps(data)}
            assert _column(data, name) == want, (data[-30:], name)
    assert _column(whole, "Size") == {0x400000: 328 << 10, 0x7F0000000000: 2 << 20}


def _column(data: bytes, name: str) -> dict[int, int]:
    starts, values = decode_smaps_column(data, name)
    return dict(zip(starts.tolist(), values.tolist()))


def test_idle_bits():
    from pmaps.kernel.idle import idle_bits

    # each page's word: PFNs 64..127 have bits 0 and 63 set; PFNs 0..63 have bit 5 set
    words = np.array([1 | (1 << 63), 1 | (1 << 63), 1 << 5], dtype=np.uint64)
    pfns = np.array([64, 127, 5], dtype=np.uint64)
    assert idle_bits(words, pfns).tolist() == [True, True, True]
    assert idle_bits(words, np.array([65, 126, 6], dtype=np.uint64)).tolist() == [False, False, False]


def test_rfc_flags_young_from_idle():
    from pmaps.model import Known, Pages, flag_string

    pm = np.array([1 << 63 | 5, 1 << 63 | 6], dtype=np.uint64)
    kf = np.array([1 << 2, 1 << 2], dtype=np.uint64)  # referenced
    pages = Pages(pm=pm, vpn=np.array([10, 11], dtype=np.uint64), cat=np.zeros(2, np.uint16), kflags=kf,
                  kcount=np.ones(2, np.uint64), idle=np.array([False, True]))
    known = Known(pfn=True, flags=True, count=True, young=True)
    st = pages.state(known)
    assert [flag_string(int(s), int(known.mask()), full=False) for s in st] == ["YR__?__", "_R__?__"]
    unknown = Known(pfn=True, flags=True, count=True)
    st = pages.state(unknown)
    assert flag_string(int(st[0]), int(unknown.mask()), full=False) == "?R__?__"


def test_locate_bisects_range_counts():
    """kernel.shmem.locate finds the pages a range count sees, with few calls."""
    from pmaps.kernel.shmem import locate

    truth = np.zeros(1000, dtype=bool)
    truth[[3, 4, 5, 500, 999]] = True
    calls = []

    def count(lo: int, ln: int) -> int:
        calls.append((lo, ln))
        return int(truth[lo - 100:lo - 100 + ln].sum())

    assert np.array_equal(locate(count, 100, 1000), truth)
    assert len(calls) < 80
    assert not locate(lambda lo, ln: 0, 0, 64).any() and locate(lambda lo, ln: ln, 0, 64).all()


def test_ranges_by_group_equals_per_vma():
    """One pass over many VMAs' pages gives the same ranges as one pass per VMA."""
    from pathlib import Path

    from pmaps.model.ranges import ranges_by_group, ranges_of
    from pmaps.store import load

    snap = load(Path(__file__).parent / "golden" / "layout.npz")
    chunks = list(snap.chunks())
    group = np.repeat(np.array([i for i, _ in chunks]), [len(p) for _, p in chunks])
    pages = type(snap.pages).concat([p for _, p in chunks])
    for full, swap in ((True, True), (False, False)):
        got = list(ranges_by_group(pages, group, snap.known, full=full, with_pfn=True, swap=swap))
        want = [(i, ranges_of(p, snap.known, full=full, with_pfn=True, swap=swap)) for i, p in chunks]
        want = [(i, r) for i, r in want if len(r)]
        assert [i for i, _ in got] == [i for i, _ in want]
        for (_, a), (_, b) in zip(got, want):
            for col in ("vpn", "count", "state", "mapcount", "pfn"):
                assert np.array_equal(getattr(a, col), getattr(b, col)), col


def test_decode_file_vmas_keeps_inode_or_shared_lines():
    """The VMAs `pmaps cgroups` reads for mapped file pages: an inode, or shared; the rest skipped
    before decoding, the kept ones decoded exactly as decode_maps does."""
    from pmaps.kernel.maps import decode_file_vmas, decode_maps

    data = (b"55d0a0000000-55d0a0001000 r--p 00000000 fe:00 26723                      /usr/bin/py thon\n"
            b"55d0a1000000-55d0a1021000 rw-p 00000000 00:00 0                          [heap]\n"
            b"7f0000000000-7f0000400000 rw-s 00000000 00:01 1036                       /dev/zero (deleted)\n"
            b"7f0000400000-7f0000500000 rw-p 00000000 00:00 0 \n"
            b"7f0000500000-7f0000600000 rw-s 00000000 00:00 0\n"
            b"7f0000600000-7f0000700000 ---p 00000000 00:00 0\n"
            b"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n")
    want = [v for v in decode_maps(data) if v.inode or v.perms[3] == "s"]
    assert decode_file_vmas(data) == want
    assert [v.path for v in want] == ["/usr/bin/py thon", "/dev/zero (deleted)", ""]
    assert decode_file_vmas(b"") == []


ROLLUP = b"""\
55d0c8a3e000-7ffd5a9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               13312 kB
Pss:                9071 kB
Shared_Clean:       4352 kB
Private_Dirty:      8960 kB
SwapPss:               0 kB
"""


def test_decode_rollup_fast_path_agrees():
    """The one-findall decoder of smaps_rollup gives decode_smaps' block, also where it falls back
    (a line that is not a kB field, no trailing newline, nothing); and on this machine's own rollup."""
    from pathlib import Path

    for data in (ROLLUP, ROLLUP + b"THPeligible:    0\n", ROLLUP[:-1], ROLLUP.replace(b"Pss: ", b"P ss:"), b"",
                 Path("/proc/self/smaps_rollup").read_bytes()):
        rows = decode_smaps(data)
        assert decode_rollup(data) == (rows[0] if rows else {})
    assert decode_rollup(ROLLUP)["Pss"] == 9071 << 10


def test_decode_status_fields():
    from pmaps.kernel.status import decode_status, decode_status_field, decode_status_uid

    status = b"Name:\tpy\\nVmRSS: x\nUmask:\t0022\nUid:\t1000\t1001\t1000\t1000\nVmRSS:\t  2048 kB\nThreads:\t1"
    assert decode_status_uid(status) == 1001
    assert decode_status_field(status, "VmRSS") == decode_status(status)["VmRSS"] == 2 << 20
    assert decode_status_field(status, "VmSwap") == 0
    assert decode_status_field(status + b"\nVmSwap:\t4 kB", "VmSwap") == 4096
    with pytest.raises(ValueError):
        decode_status_uid(b"Name:\tx\nGid:\t0\t0\t0\t0\n")


def test_unique_sorted_is_np_unique():
    from pmaps.numeric import unique_sorted

    rng = np.random.default_rng(1)
    for x in (np.zeros(0, dtype=np.int64), np.array([5]), rng.integers(0, 50, 300),
              rng.integers(0, 1 << 60, 99, dtype=np.uint64)):
        assert np.array_equal(unique_sorted(x), np.unique(x)) and unique_sorted(x).dtype == x.dtype


def test_ordered_map_orders_raises_and_stops():
    """Results in order; an error raised in a worker comes out in the caller at its item; stopping
    early runs no more than `ahead` items past the last one taken."""
    import threading

    from pmaps.collector.parallel import ordered_map

    assert list(ordered_map(lambda x: x * x, range(50), workers=2, ahead=4)) == [x * x for x in range(50)]
    assert list(ordered_map(lambda x: x, [], workers=2, ahead=4)) == []

    def boom(x: int) -> int:
        if x == 7:
            raise KeyError(x)
        return x

    got = []
    with pytest.raises(KeyError):
        for v in ordered_map(boom, range(20), workers=2, ahead=4):
            got.append(v)
    assert got == list(range(7))
    ran = []
    gen = ordered_map(lambda x: ran.append(x) or x, range(1000), workers=2, ahead=4)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()
    assert len(ran) <= 3 + 4 and not any(t.name.startswith("pmaps-read") for t in threading.enumerate())


def test_smaps_pieces_stream(monkeypatch):
    """smaps_pieces cuts the text, read in chunks cut anywhere, into pieces that each end after a
    VmFlags line (whole VMAs) and join to the text; without VmFlags, one piece at the end."""
    import pmaps.kernel.smaps as smaps

    block = SMAPS + b"VmFlags: rd wr mr mw me ac\n"
    data = b"".join(block.replace(b"00400000-", f"{0x400000 + i * 0x100000:08x}-".encode(), 1) for i in range(50))
    for text in (data, SMAPS * 3):
        for size in (1, 7, 64, 500, len(text)):
            monkeypatch.setattr(smaps, "_PIECE", size * 3)
            chunks = [text[i:i + size] for i in range(0, len(text), size)]
            monkeypatch.setattr(smaps.procfs, "read_chunks", lambda pid, name, started=False, c=chunks: iter(c))
            pieces = list(smaps.smaps_pieces(1))
            assert b"".join(pieces) == text, size
            if text is data:
                assert all(p.endswith(b"ac\n") and p.count(b"VmFlags") for p in pieces), size
                # A _PIECE shorter than one VMA finds no VmFlags line in it: read whole, as before 3.8.
                assert len(pieces) > 1 or not len(block) < size * 3 < len(text), size
            else:
                assert len(pieces) == 1, size
            got = [_column(p, "Rss") for p in pieces]
            assert {k: v for d in got for k, v in d.items()} == _column(text, "Rss"), size


@pytest.mark.parametrize("max_read", [3, 1 << 20])
def test_reads_fill_the_plan_split_and_cut_anywhere(tmp_path, monkeypatch, max_read):
    """A lookup plan's reads (long segments cut at MAX_READ PFNs, the reads shared by two threads
    at any byte) put each PFN's u64 where the plan's index says, from a file of known words."""
    import os

    from pmaps.kernel import kpage

    monkeypatch.setattr(kpage, "MAX_READ", max_read)
    words = np.arange(1000, dtype="<u8") * 7 + 1
    path = tmp_path / "words"
    path.write_bytes(words.tobytes())
    rng = np.random.default_rng(3)
    pfns = np.concatenate([np.arange(10, 30), rng.integers(0, 1000, 200), np.arange(500, 540), [999, 0]])
    pfns = pfns.astype(np.uint64)
    plan = plan_lookup(pfns, 4)
    fd = os.open(path, os.O_RDONLY)
    try:
        whole = np.zeros(plan.total, dtype="<u8")
        kpage._run_split([kpage.Reads.of(fd, str(path), whole, plan)], split=False)
        assert (whole[plan.index] == words[pfns.astype(np.int64)]).all()
        for nbytes in range(0, plan.total * 8 + 1, 8 * 7):
            buf = np.zeros(plan.total, dtype="<u8")
            a, b = kpage.Reads.of(fd, str(path), buf, plan).cut(nbytes)
            assert a.total == nbytes and b.total == plan.total * 8 - nbytes
            a.run()
            b.run()
            assert (buf == whole).all()
        monkeypatch.setattr(kpage, "SPLIT_MIN", 1)
        buf = np.zeros(plan.total, dtype="<u8")
        kpage._run_split([kpage.Reads.of(fd, str(path), buf, plan)])
        assert (buf == whole).all()
    finally:
        os.close(fd)


@pytest.mark.parametrize("long_dev", ["1234:5678", "12:34"])
def test_table_string_fields_match_the_lines(long_dev):
    """A VmaTable's perms, dev and path (read by numpy for thousands of lines, the named paths only)
    are decode_maps' own, whatever their lengths (a dev of 9 characters: read line by line), in a
    whole table and in a take() of it."""
    from pmaps.kernel.maps import VmaTable, decode_table

    devs = ["00:00", "fd:01", "103:02", long_dev, "08:1"]
    perms = ["rw-p", "r--s", "---p", "rwxs"]
    lines = []
    for i in range(300):
        path = ["", "/usr/lib/libc.so.6", "[heap]", "/tmp/a b  c", "[anon:x]"][i % 5] if i % 7 else ""
        lines.append(f"{0x10000 * (i + 1):08x}-{0x10000 * (i + 1) + 0x1000:08x} {perms[i % 4]} 00000000 "
                     f"{devs[i % 5]} {i % 3 * 12345} {' ' * (i % 3)}{path}".rstrip() + "\n")
    data = "".join(lines).encode()
    want = decode_maps(data)
    t = decode_table(data)
    assert t._pos is not None  # the columns path, not decode_maps'
    assert t.perms == [v.perms for v in want] and t.dev == [v.dev for v in want] and t.path == [v.path for v in want]
    sub = t.take(np.arange(0, 300, 4))
    assert sub.perms == [v.perms for v in want[::4]] and sub.dev == [v.dev for v in want[::4]]
    assert sub.path == [v.path for v in want[::4]]
    # kinds(): each distinct value and each VMA's index, from the bytes or from the strings alike.
    for table in (decode_table(data), t, VmaTable.of_vmas(want)):
        for name in ("perms", "dev"):
            values, index = table.kinds(name)
            assert len(set(values)) == len(values) and [values[i] for i in index] == [getattr(v, name) for v in want]
        assert table.named.tolist() == [bool(v.path) for v in want]


@pytest.mark.parametrize("pure", [False, True])
@pytest.mark.parametrize("tail", ["", " ", "  "])
def test_table_headers_and_plain(tail, pure, monkeypatch):
    """VmaTable.headers() are each line as printed, an unnamed one cut at its inode, whether unnamed
    lines end with the kernel's one blank, none, or more; a path ending in a blank keeps it. `plain`
    says when no line holds a control character. Columns from the compiled core and from numpy."""
    from pmaps.kernel.maps import decode_table

    if pure:
        monkeypatch.setenv("PMAPS_PURE", "1")

    lines = []
    for i in range(200):
        head = f"{0x10000 * (i + 1):08x}-{0x10000 * (i + 1) + 0x1000:08x} rw-p 00000000 00:00 {i % 3}"
        path = ["", "/usr/lib/libc.so.6", "", "[heap]"][i % 4]
        lines.append(f"{head:<72} {path}" if path else head + tail)
    for extra, plain in (("", True), ("/x y ", True), ("/esc\x1b[31m", False)):
        text = lines + ([f"{'ffff0000-ffff1000 r--p 00000000 fe:00 7':<72} {extra}"] if extra else [])
        data = ("\n".join(text) + "\n").encode()
        t = decode_table(data)
        assert t._pos is not None
        assert t.headers() == [v.maps_line() if v.path else ln.rstrip() for v, ln in zip(decode_maps(data), text)]
        assert t.plain is plain
        assert t.take(np.arange(0, len(t), 3)).headers() == t.headers()[::3]


def test_table_short_fields_with_a_nul():
    """A NUL inside perms or dev (which the u64 read of a short field would take for padding) sends
    kinds() to the strings: each line's own value, as decode_maps reads it."""
    from pmaps.kernel.maps import decode_table

    odd_perms, odd_dev = "r\0-p", "0\x000:00"
    lines = [f"{0x10000 * (i + 1):08x}-{0x10000 * (i + 1) + 0x1000:08x} {odd_perms if i == 70 else 'rw-p'} "
             f"00000000 {odd_dev if i == 80 else '00:00'} 0\n" for i in range(100)]
    data = "".join(lines).encode()
    want = decode_maps(data)
    t = decode_table(data)
    for name in ("perms", "dev"):
        values, index = t.kinds(name)
        assert [values[i] for i in index] == [getattr(v, name) for v in want]
    assert t.perms[70] == odd_perms and t.dev[80] == odd_dev
