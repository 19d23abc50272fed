"""The compiled core (kernel/_kpage.c) against the pure path: the same plans on synthetic PFNs, the same
reads of a file standing in for kpageflags, hostile arguments refused, and the same pages and CLI
output for real children (kpageflags and kpagecount frozen into files, so that both paths read the
same bytes), both ways. Skipped where the core is not built, but for the test that it is built
wherever a C compiler is."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from memchild import MemChild

import pmaps
from pmaps.errors import PmapsError
from pmaps.kernel import kpage, native, procfs
from pmaps.kernel import pagemap as pmb
from pmaps.kernel.kpage import Reads, plan_lookup

CORE: native.Core | None
try:
    from pmaps.kernel import _kpage as CORE
except ImportError:
    CORE = None
needs_core = pytest.mark.skipif(CORE is None, reason="the compiled core is not built")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="kpageflags needs root")
U64 = np.uint64


def test_core_built_where_a_compiler_is():
    """`pip install .` builds the core when the machine has a C compiler (setup.py, optional=True):
    a silent fallback to the pure path everywhere would pass every other test here."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    from pmaps.kernel import _kpage

    assert callable(_kpage.plan) and callable(_kpage.pread_spans)


def test_version_says_which_path(monkeypatch):
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    env.pop(native.PURE_ENV, None)
    out = subprocess.run([sys.executable, "-m", "pmaps", "--version"], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.startswith("pmaps ") and ("compiled core" if CORE is not None else "pure Python") in out
    out = subprocess.run([sys.executable, "-m", "pmaps", "--version"], capture_output=True, text=True,
                         env={**env, native.PURE_ENV: "1"}, check=True).stdout
    assert f"(pure Python: {native.PURE_ENV} is set)" in out
    monkeypatch.setenv(native.PURE_ENV, "1")
    assert native.load() is None and kpage.PfnReader(False, False).core is None


# -- the plan: synthetic PFNs ------------------------------------------------------------------
def _cases() -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(7)
    out: list[tuple[np.ndarray, int]] = [
        (np.zeros(0, dtype=U64), 24), (np.array([5], dtype=U64), 24), (np.array([7] * 9, dtype=U64), 0),
        (np.arange(1000, 0, -1, dtype=U64), 24), (np.array([0, (1 << 55) - 1, 3, 2, 1], dtype=U64), 24),
        (np.array([500, 499, 498, 497, 498, 499, 500, 501, 7, 7, 7, 6, 5, 1000, 1001, 999], dtype=U64), 1),
        (np.array([10, 11, 12, 5_000_000, 5_000_001, 10, 11, 50, 2_000_000], dtype=U64), 64),
        (rng.permutation(np.arange(0, 100_000, 2)).astype(U64), 1),
    ]
    for t in range(400):
        n = int(rng.integers(1, 3000))
        if t % 4 == 0:
            p = rng.integers(0, 5000, n)
        elif t % 4 == 1:  # runs up, down and still, with jumps
            p = np.cumsum(rng.choice([-1, 0, 1, 1, 1, 40, -3000, 70_000], n)) + 10**7
        elif t % 4 == 2:
            p = rng.integers(0, 1 << 55, n)
        else:  # blocks in falling order, a folio-like pattern
            p = np.concatenate([np.arange(a, a + 64) for a in rng.integers(0, 50_000, n // 64 + 1) * 64])[::-1]
        out.append((p.astype(U64), int(rng.integers(0, 80))))
    return out


@needs_core
def test_plan_same_as_pure():
    for pfns, gap in _cases():
        a = plan_lookup(pfns, gap)
        b = plan_lookup(pfns, gap, core=CORE)
        for f in ("seg_start", "seg_len", "index"):
            assert getattr(b, f).dtype == np.int64
            assert np.array_equal(getattr(a, f), getattr(b, f)), (f, pfns[:20], gap)
        if len(pfns):  # and the plan is right: every page finds its own PFN
            buf = np.concatenate([np.arange(s, s + n) for s, n in zip(b.seg_start.tolist(), b.seg_len.tolist())])
            assert np.array_equal(buf[b.index], pfns.astype(np.int64))


@needs_core
def test_plan_refuses_hostile_arguments():
    assert CORE is not None
    p = np.arange(10, dtype=U64)
    idx = np.empty(10, np.int64)
    for bad in (
        lambda: CORE.plan(np.array([1 << 55], dtype=U64), 24, np.empty(1, np.int64)),  # not a PFN
        lambda: CORE.plan(np.array([2**64 - 1, 0], dtype=U64), 24, np.empty(2, np.int64)),
        lambda: CORE.plan(p, -1, idx),
        lambda: CORE.plan(p, 1 << 40, idx),
        lambda: CORE.plan(p, 24, np.empty(9, np.int64)),  # index too short
        lambda: CORE.plan(p, 24, np.empty(11, np.int64)),  # or too long
        lambda: CORE.plan(b"1234567", 24, bytearray(0)),  # not whole words
        lambda: CORE.plan(p, 24, p),  # the index over the PFNs
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises((TypeError, BufferError)):
        CORE.plan(p, 24, bytes(80))  # a read-only index
    with pytest.raises(TypeError):
        CORE.plan([1, 2], 24, idx)  # not a buffer
    with pytest.raises(TypeError):
        CORE.plan(p, 24)
    s, n = CORE.plan(bytearray(0), 24, bytearray(0))
    assert s == n == b""
    s, n = CORE.plan(memoryview(p.tobytes())[:80], 3, memoryview(bytearray(81))[1:])  # unaligned
    assert np.frombuffer(s, np.int64).tolist() == [0] and np.frombuffer(n, np.int64).tolist() == [10]


# -- the reads: a file stands in for kpageflags --------------------------------------------------
@pytest.fixture
def fake_kpf(tmp_path):
    """A file of 5,000 u64 entries (entry i = i * 3 + 1), opened read-only."""
    path = tmp_path / "kpageflags"
    path.write_bytes((np.arange(5000, dtype=U64) * U64(3) + U64(1)).tobytes())
    fd = os.open(path, os.O_RDONLY)
    yield fd, str(path)
    procfs.close(fd)


def _read(fd: int, path: str, starts: list[int], lens: list[int], core: native.Core | None, fill: int = 0xAB
          ) -> np.ndarray:
    start, length = np.array(starts, dtype=np.int64), np.array(lens, dtype=np.int64)
    buf = np.frombuffer(bytes([fill]) * int(length.sum() * 8), dtype="<u8").copy()
    Reads.spans(fd, path, buf, start, length, np.concatenate(([0], np.cumsum(length)[:-1])).astype(np.int64),
                core=core).run()
    return buf


@needs_core
def test_reads_same_as_pure_and_zero_past_the_end(fake_kpf):
    fd, path = fake_kpf
    want = np.arange(5000, dtype=U64) * U64(3) + U64(1)
    cases = [([0], [5000]), ([10, 4990, 7], [3, 10, 1]), ([4999], [1]), ([6000, 4998], [4, 4]), ([0], [0])]
    for starts, lens in cases:
        a = _read(fd, path, starts, lens, None)
        b = _read(fd, path, starts, lens, CORE)
        assert np.array_equal(a, b), (starts, lens)
        exp = np.concatenate([[want[p] if p < 5000 else 0 for p in range(s, s + n)] for s, n in zip(starts, lens)])
        assert np.array_equal(b, exp.astype(U64))  # what EOF leaves is zeroed, not left as it was


@needs_core
def test_reads_cut_in_two_read_the_same(fake_kpf):
    """_run_split cuts the reads between two threads at any byte count (a multiple of 8)."""
    fd, path = fake_kpf
    start, length = np.array([3, 100, 2000, 4990], np.int64), np.array([40, 1, 900, 20], np.int64)
    pos = np.concatenate(([0], np.cumsum(length)[:-1])).astype(np.int64)
    whole = np.zeros(int(length.sum()), dtype="<u8")
    Reads.spans(fd, path, whole, start, length, pos).run()
    for core in (None, CORE):
        for nbytes in (0, 8, 40 * 8, 41 * 8, 500 * 8, int(length.sum()) * 8):
            buf = np.zeros(len(whole), dtype="<u8")
            r = Reads.spans(fd, path, buf, start, length, pos, core=core)
            a, b = r.cut(nbytes)
            assert a.total == nbytes and a.total + b.total == r.total
            a.run()
            b.run()
            assert np.array_equal(buf, whole), (core, nbytes)


@needs_core
def test_reads_refuse_hostile_arguments(fake_kpf):
    assert CORE is not None
    fd, _ = fake_kpf
    buf = bytearray(64)
    z = np.zeros(1, np.int64)

    def a(*v: int) -> np.ndarray:
        return np.array(v, dtype=np.int64)

    for off, pos, size in ((a(-8), z, a(8)), (z, a(-8), a(8)), (z, z, a(-8)), (z, a(60), a(8)), (z, z, a(72)),
                           (z, a(2**62), a(2**62)), (a(2**63 - 1), z, a(8)), (z, a(0, 8), a(8)), (z, z, z[:0])):
        with pytest.raises(ValueError):
            CORE.pread_spans(fd, buf, off, pos, size)
    assert buf == bytearray(64)  # nothing written
    with pytest.raises((TypeError, BufferError)):
        CORE.pread_spans(fd, b"x" * 64, z, z, a(8))  # read-only
    with pytest.raises(ValueError):
        CORE.pread_spans(fd, buf, b"1234", z, a(8))
    with pytest.raises(OSError):
        CORE.pread_spans(-1, buf, z, z, a(8))


def test_reads_error_becomes_pmaps_error(kpage_path, tmp_path):
    """An unreadable fd: the same PmapsError both ways (procfs.translate)."""
    d = os.open(tmp_path, os.O_RDONLY)  # a directory: EISDIR
    try:
        with pytest.raises(PmapsError, match="cannot read /proc/kpageflags"):
            Reads.spans(d, "/proc/kpageflags", np.zeros(4, "<u8"), np.array([0]), np.array([4]), np.array([0]),
                        core=kpage_path).run()
    finally:
        os.close(d)


# -- real children, kpageflags and kpagecount frozen -------------------------------------------
SPECS = ["a:anon:48M", "s:anon:16M:every=16", "z:zero:16M", "f:file:24M", "t:thp:8M", "c:cow:2M"]


def _freeze(tmp_path, pfns: np.ndarray) -> None:
    """Sparse copies of kpageflags and kpagecount holding the real entries of the 64-PFN blocks around
    these PFNs (each block and its neighbours: what a plan reads through); the rest reads 0."""
    blk = np.unique(pfns.astype(np.int64) >> 6)
    blk = np.unique(np.concatenate([blk - 1, blk, blk + 1]))
    blk = blk[blk >= 0]
    brk = np.flatnonzero(np.diff(blk) != 1) + 1
    for name in ("kpageflags", "kpagecount"):
        src = os.open(f"/proc/{name}", os.O_RDONLY)
        dst = os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for run in np.split(blk, brk):
                off, n = int(run[0]) * 64 * 8, len(run) * 64 * 8
                os.pwrite(dst, os.pread(src, n, off), off)
        finally:
            os.close(src)
            os.close(dst)


@pytest.fixture(scope="module")
def child():
    with MemChild(SPECS) as mc:
        yield mc


@pytest.fixture
def frozen(child, tmp_path, monkeypatch):
    """kpageflags and kpagecount frozen for the child's pages and pmaps' own (the observer's)."""
    snap = pmaps.collect(child.pid, flags=False, counts=False)
    me = pmaps.collect(os.getpid(), flags=False, counts=False, include_self=True)
    pfns = np.concatenate([p.pfn[p.present] for p in (snap.pages, me.pages)])
    _freeze(tmp_path, pfns)
    monkeypatch.setattr(procfs, "open_kpage", lambda name: os.open(tmp_path / name, os.O_RDONLY)
                        if name in ("kpageflags", "kpagecount") else None)
    return child


@needs_root
@needs_core
def test_pages_same_both_ways(frozen, monkeypatch):
    """collect() of a child of every common kind (THP, file folios, zero page, COW), through each
    path, reading the same frozen bytes: the same flags and counts, exactly."""
    got = {}
    for name in ("pure", "core"):
        if name == "pure":
            monkeypatch.setenv(native.PURE_ENV, "1")
        else:
            monkeypatch.delenv(native.PURE_ENV)
        got[name] = pmaps.collect(frozen.pid).pages
    a, b = got["pure"], got["core"]
    assert np.array_equal(a.vpn, b.vpn) and np.array_equal(a.pm, b.pm)
    assert np.array_equal(a.kflags, b.kflags) and np.array_equal(a.kcount, b.kcount)
    assert (a.kflags[a.present] != 0).all()  # real entries were frozen: a zero-filled read would show


@needs_root
@needs_core
@pytest.mark.parametrize("args", [[], ["--flags=all"], ["--format", "json"]], ids=lambda a: " ".join(a) or "text")
def test_cli_output_same_both_ways(frozen, run, args):
    """`pmaps PID` through each path: byte-identical output (more than one batch: the reader threads
    and the split reads both run)."""
    out = {}
    for e in ("1", "", "1"):
        r = run(*args, str(frozen.pid), env={native.PURE_ENV: e})
        assert r.code == 0, r.err
        out.setdefault(e, []).append(r.out)
    assert out["1"][0] == out["1"][1]  # the pure path agrees with itself: the target stood still
    assert out[""][0] == out["1"][0]


@needs_root
def test_live_lookup_both_ways(child, kpage_path):
    """Without freezing: each path's flags of the child's pages are what kpageflags says now (ABI bits
    less those the kernel flips by itself)."""
    from pmaps.analysis.diff import VOLATILE

    snap = pmaps.collect(child.pid, include_self=True)
    pres = snap.pages.present
    pfn = snap.pages.pfn[pres]
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        real = np.array([int.from_bytes(os.pread(fd, 8, int(p) * 8), "little") for p in pfn], dtype=U64)
    finally:
        os.close(fd)
    mask = kpage.KPF_ABI_MASK & ~VOLATILE
    assert np.array_equal(snap.pages.kflags[pres] & mask, real & mask)
    assert bool((pmb.present(snap.pages.pm) == pres).all())


@needs_core
def test_plan_survives_pfns_changing_under_it():
    """The plan runs without the GIL: another thread may write to the PFNs meanwhile. A wrong plan
    then, but no write outside the buffers (the interpreter lives on to check the next one)."""
    import threading

    assert CORE is not None
    rng = np.random.default_rng(3)
    pfns = rng.integers(0, 1 << 20, 200_000).astype(U64)
    stop = threading.Event()

    def scribble() -> None:
        r = np.random.default_rng(4)
        while not stop.is_set():
            k = int(r.integers(0, len(pfns) - 1000))
            pfns[k:k + 1000] = r.choice(np.array([0, 1, 2, 1 << 54, 2**64 - 1], dtype=U64), 1000)
            pfns[k:k + 1000] = r.integers(0, 1 << 20, 1000).astype(U64)  # out of range only for a moment

    t = threading.Thread(target=scribble)
    t.start()
    try:
        planned = 0
        for _ in range(300):
            idx = np.empty(len(pfns), np.int64)
            try:
                s, n = CORE.plan(pfns, 24, idx)
            except ValueError:
                continue  # a PFN out of range was seen
            planned += 1
            assert len(s) == len(n) <= len(pfns)
        assert planned  # not every plan refused
    finally:
        stop.set()
        t.join()


# -- read_matching: top's observer pages (pagemap.read_matching) -----------------------------------
@pytest.fixture
def fake_pagemap(tmp_path):
    """A file of 6,000 pagemap entries standing in for /proc/PID/pagemap: present pages with PFNs
    from a small pool (so that many match), holes (0) and swapped entries (bit 62), seeded."""
    rng = np.random.default_rng(11)
    pfn = rng.integers(1000, 1400, 6000).astype(U64)
    kind = rng.integers(0, 4, 6000)
    ent = np.where(kind == 0, U64(0), np.where(kind == 1, (U64(1) << U64(62)) | pfn,
                                               (U64(1) << U64(63)) | (U64(1) << U64(61)) | pfn))
    path = tmp_path / "pagemap"
    path.write_bytes(ent.astype("<u8").tobytes())
    fd = os.open(path, os.O_RDONLY)
    yield fd, ent
    procfs.close(fd)


def _matching_by_hand(ent: np.ndarray, starts: list[int], ends: list[int], pfns: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    pages = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)] or [np.zeros(0, np.int64)])
    pm = ent[pages.astype(np.int64)]
    pm = pm[pm >> U64(63) == 1]
    at = {int(p): i for i, p in enumerate(pfns)}
    idx = np.array([at.get(int(e & pmb.PM_PFN_MASK), -1) for e in pm], dtype=np.int64)
    return pm[idx >= 0], idx[idx >= 0]


@pytest.mark.parametrize("pure", [False, True])
def test_read_matching_both_ways(fake_pagemap, monkeypatch, pure):
    """The same entries and indexes as a page-by-page reading of the file, through holes read
    through (gap) and not, both paths; reads past the end are the mm gone (ProcessGone/NoSuchProcess)."""
    if not pure and CORE is None:
        pytest.skip("the compiled core is not built")
    if pure:
        monkeypatch.setenv(native.PURE_ENV, "1")
    fd, ent = fake_pagemap
    rng = np.random.default_rng(5)
    pools = [np.zeros(0, U64), np.array([1200], U64), np.unique(rng.integers(1000, 1400, 150)).astype(U64),
             np.arange(1000, 1400, dtype=U64)]
    runs = [([], []), ([0], [6000]), ([5, 900, 903, 2000], [10, 903, 1500, 2001]), ([7, 7, 9], [7, 8, 4000]),
            ([100, 700], [600, 5999])]
    for pfns in pools:
        for starts, ends in runs:
            for gap in (0, 1, 512):
                got = pmb.read_matching(fd, os.getpid(), np.array(starts, U64), np.array(ends, U64), pfns, gap)
                want = _matching_by_hand(ent, starts, ends, pfns)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (len(pfns), starts, gap)
    with pytest.raises(PmapsError):  # past the end of the file: 0 bytes, as pagemap once the mm is gone
        pmb.read_matching(fd, 2**22 + 7, np.array([5990], U64), np.array([6010], U64), pools[3])


@needs_core
def test_read_matching_refuses_hostile_arguments(fake_pagemap):
    assert CORE is not None
    fd, _ = fake_pagemap
    p = np.arange(1000, 1400, dtype=U64)

    def a(*v: int) -> np.ndarray:
        return np.array(v, dtype=U64)

    for s, e in ((a(10), a(5)), (a(0, 5), a(10, 20)), (a(0), a(2**60)), (a(0), a(2**24 + 1)), (a(0), a(1, 2))):
        with pytest.raises(ValueError):
            CORE.read_matching(fd, s, e, 0, p)
    for gap in (-1, 2**40):
        with pytest.raises(ValueError):
            CORE.read_matching(fd, a(0), a(1), gap, p)
    with pytest.raises(ValueError):
        CORE.read_matching(fd, b"123", a(1), 0, p)
    with pytest.raises(OSError):
        CORE.read_matching(-1, a(0), a(1), 0, p)
    assert CORE.read_matching(fd, a(5990), a(6001), 0, p) is None  # EOF


@needs_root
def test_read_matching_live_both_ways(child, monkeypatch):
    """A live child's pagemap, matched against pmaps' own file pages (top's observer correction):
    the same both ways."""
    from pmaps.collector.observer import Observer

    obs = Observer.read()
    assert obs is not None and len(obs)
    spans = obs.file_ranges(procfs.read_file(child.pid, "maps", started=True))
    assert spans  # it is a python too: libc, the interpreter
    starts = np.array([a >> 12 for a, _ in spans], U64)
    ends = np.array([b >> 12 for _, b in spans], U64)
    fd = procfs.open_pagemap(child.pid)
    try:
        a = pmb.read_matching(fd, child.pid, starts, ends, obs.pfns)
        monkeypatch.setenv(native.PURE_ENV, "1")
        b = pmb.read_matching(fd, child.pid, starts, ends, obs.pfns)
    finally:
        procfs.close(fd)
    assert len(a[0]) and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@needs_core
def test_fill_reads_until_eof_or_little_room(tmp_path):
    """fill: read(2) into buf from `at` until EOF or less than `room` bytes are left; returns the end."""
    assert CORE is not None
    data = bytes(range(256)) * 40  # 10,240 bytes
    f = tmp_path / "f"
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        buf = bytearray(4000)
        assert CORE.fill(fd, buf, 0, 1) == 4000 and bytes(buf) == data[:4000]  # full: no room left
        assert CORE.fill(fd, buf, 100, 4000) == 100  # less room than asked: nothing read
        assert CORE.fill(fd, buf, 100, 3900) == 4000 and bytes(buf[100:]) == data[4000:7900]
        big = bytearray(10_000)
        assert CORE.fill(fd, big, 0, 1) == len(data) - 7900  # stopped at EOF with room left
        assert bytes(big[:len(data) - 7900]) == data[7900:]
        assert CORE.fill(fd, big, 0, 1) == 0
    finally:
        os.close(fd)


@needs_core
def test_fill_refuses_hostile_arguments(tmp_path):
    assert CORE is not None
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    fd = os.open(f, os.O_RDONLY)
    try:
        for at, room in ((-1, 1), (11, 1), (0, 0), (0, -5)):
            with pytest.raises(ValueError):
                CORE.fill(fd, bytearray(10), at, room)
        with pytest.raises(BufferError):  # bytes are read-only
            CORE.fill(fd, b"read-only", 0, 1)
        with pytest.raises(OSError):
            CORE.fill(-1, bytearray(10), 0, 1)
        wfd = os.open(f, os.O_WRONLY)
        try:
            with pytest.raises(OSError):  # EBADF: not open for reading
                CORE.fill(wfd, bytearray(10), 0, 1)
        finally:
            os.close(wfd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("pure", [False, True])
def test_read_chunks_is_the_file_both_ways(monkeypatch, tmp_path, pure):
    """procfs.read_chunks (a reused buffer filled by the core's loop of reads, or Python's) gives the
    file's bytes, in chunks of at most `size` bytes: a live child's maps (seq_file: a page or so a
    read) and a regular file of 3 MB standing in for a proc file (reads as long as asked)."""
    if pure:
        monkeypatch.setenv(native.PURE_ENV, "1")
    elif CORE is None:
        pytest.skip("the compiled core is not built")
    sizes = (1, 100, 4095, 4096, 4097, 5000, 1 << 20)
    with MemChild(["a:anon:256K", "b:anon:64K"]) as mc:
        whole = procfs.read_file(mc.pid, "maps")
        for size in sizes:
            chunks = list(procfs.read_chunks(mc.pid, "maps", size=size))
            assert b"".join(chunks) == whole and max(map(len, chunks)) <= size, size
    data = os.urandom(3 << 20)
    (tmp_path / "big").write_bytes(data)
    monkeypatch.setattr(procfs, "proc_path", lambda pid, name: str(tmp_path / name))
    for size in sizes[3:]:
        chunks = list(procfs.read_chunks(1, "big", size=size))
        assert b"".join(chunks) == data and max(map(len, chunks)) <= size, size
        assert all(len(c) > size - 4096 for c in chunks[:-1]), size  # chunks are filled
