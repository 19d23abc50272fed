"""pmaps files against real files: cachestat's counts, fincore's resident bytes, an independent
mincore walk, the walk's skip reasons, --evict/--touch, and the 2007 --pages view."""
from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from helpers import NOBODY, PAGE, pmaps_cmd
from pmaps.analysis.files import summarize
from pmaps.kernel import pagecache as pc

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")
HAVE_CS = pc.have_cachestat()
needs_cs = pytest.mark.skipif(not HAVE_CS, reason="no cachestat(2) (Linux 6.5+)")


def cold(path: Path | str, size: int, data: bytes | None = None) -> None:
    """A file of `size` bytes written, synced and dropped from the cache."""
    with open(path, "wb") as f:
        f.write(data if data is not None else os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_pages(path: Path | str, first: int, count: int) -> None:
    """Bring exactly these pages in: readahead off (FADV_RANDOM), then pread them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for i in range(first, first + count):
            os.pread(fd, 1, i * PAGE)
    finally:
        os.close(fd)


def fincore(paths: list[str]) -> dict[str, int]:
    """util-linux fincore's RES in bytes, per file."""
    r = subprocess.run(["fincore", "--bytes", "--raw", "--noheadings", "-o", "RES,FILE", *paths],
                       capture_output=True, text=True, check=True)
    return {line.split(" ", 1)[1]: int(line.split(" ", 1)[0]) for line in r.stdout.splitlines()}


def mincore_resident(path: str) -> int:
    """Independent of pmaps: Python's mmap and mincore through ctypes, pages -> bytes."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    if size == 0:
        return 0
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mm:
        a = np.frombuffer(mm, np.uint8)
        vec = np.zeros((size + PAGE - 1) // PAGE, np.uint8)
        assert libc.mincore(ctypes.c_void_p(a.ctypes.data), ctypes.c_size_t(size), ctypes.c_void_p(vec.ctypes.data)) == 0
        del a
    return int(np.count_nonzero(vec & 1)) * PAGE


def files_json(run, *args: str) -> dict:
    r = run("files", "--format", "json", *args)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["schema"] == "pmaps-files/1"
    return doc


@pytest.fixture
def tree(tmp_path):
    """Half-read, sparse, empty, cold, fully read files, a subdirectory, a FIFO and a device node."""
    t = tmp_path / "tree"
    (t / "sub").mkdir(parents=True)
    cold(t / "half.dat", 64 * PAGE)
    read_pages(t / "half.dat", 0, 32)
    with open(t / "sparse.dat", "wb") as f:
        f.truncate(256 << 20)  # 256 MiB hole
    with open(t / "sparse.dat", "r+b") as f:
        f.seek(100 * PAGE)
        f.write(b"x" * PAGE)  # one written page in the middle of the hole
        f.flush()
        os.fsync(f.fileno())
    (t / "empty").write_bytes(b"")
    cold(t / "sub" / "cold.dat", 10 * PAGE)
    cold(t / "sub" / "odd.dat", 3 * PAGE + 5)
    read_pages(t / "sub" / "odd.dat", 3, 1)  # the partial last page
    os.mkfifo(t / "fifo")
    if ROOT:
        os.mknod(t / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device (like /dev/null)
    (t / "link").symlink_to(t / "half.dat")
    return t


@needs_cs
def test_tree_matches_fincore_and_cachestat(run, tree):
    doc = files_json(run, "-r", "--bytes", str(tree))
    rows = {r["path"]: r for r in doc["files"]}
    assert set(rows) == {str(tree / n) for n in ("half.dat", "sparse.dat", "empty", "sub/cold.dat", "sub/odd.dat")}
    assert rows[str(tree / "half.dat")]["resident"] == 32 * PAGE
    assert rows[str(tree / "half.dat")]["resident_pct"] == 50.0
    assert rows[str(tree / "sparse.dat")]["resident"] == PAGE
    assert rows[str(tree / "sub/cold.dat")]["resident"] == 0
    assert rows[str(tree / "sub/odd.dat")]["resident"] == PAGE
    assert rows[str(tree / "empty")]["resident"] == 0 and rows[str(tree / "empty")]["resident_pct"] is None
    assert fincore(list(rows)) == {p: r["resident"] for p, r in rows.items()}
    assert doc["total"]["resident"] == sum(r["resident"] for r in rows.values())
    assert doc["total"]["files"] == 5
    # the FIFO and the device node are counted as skipped, never opened; the symlink not followed
    assert doc["skipped"] == {"special": 2 if ROOT else 1}
    r = run("files", "-r", str(tree))
    assert r.code == 0
    assert f"not counted: {2 if ROOT else 1} special" in r.err


@needs_cs
def test_the_mincore_fallback_agrees(run, tree):
    paths = [str(tree / "half.dat"), str(tree / "sparse.dat"), str(tree / "sub/odd.dat")]
    r = run("files", "--mincore", "--format", "json", *paths)
    assert r.code == 0
    assert r.err.count("mincore") == 1  # said once
    doc = json.loads(r.out)
    assert doc["method"] == "mincore"
    assert {f["path"]: f["resident"] for f in doc["files"]} == fincore(paths)
    assert all(f["dirty"] is None for f in doc["files"])


@pytest.fixture
def public_dir():
    """A directory nobody can reach (pytest's tmp_path is under a 0700 directory)."""
    import shutil

    d = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="pmaps-files-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


@needs_cs
def test_dirty_through_a_shared_mapping_is_exact(run, tmp_path):
    path = tmp_path / "dirty.dat"
    cold(path, 64 * PAGE)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 64 * PAGE) as mm:
        mm.madvise(mmap.MADV_RANDOM)  # no fault-around: single pages, not large folios
        for i in range(10, 17):
            mm[i * PAGE] = 1
        doc = files_json(run, str(path))
        (row,) = doc["files"]
        assert row["dirty"] == 7 * PAGE
        assert row["resident"] >= 7 * PAGE
        mm.flush()
    (row,) = files_json(run, str(path))["files"]
    assert row["dirty"] == 0


@needs_cs
def test_tmpfs_file(run):
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
        f.write(os.urandom(5 * PAGE + 1))
        f.flush()
        (row,) = files_json(run, f.name)["files"]
        assert row["resident"] == 6 * PAGE == fincore([f.name])[f.name]


@needs_cs
def test_evict_and_touch_say_what_they_did(run, tmp_path):
    path = tmp_path / "f.dat"
    cold(path, 40 * PAGE)
    r = run("files", "--touch", "--bytes", str(path))
    assert r.code == 0, r.err
    assert f"touched 1 file: cached 0 before, {40 * PAGE} after (+{40 * PAGE})" in r.err
    assert fincore([str(path)])[str(path)] == 40 * PAGE
    r = run("files", "--evict", "--format", "json", str(path))
    assert r.code == 0, r.err
    assert "evicted 1 file: cached 160K before, 0 after (-160K)" in r.err
    assert json.loads(r.out)["files"][0]["resident"] == 0 == fincore([str(path)])[str(path)]
    # Nothing acted on: the one line of paths not counted, no "evicted 0 files" before it.
    os.mkfifo(tmp_path / "fifo")
    r = run("files", "--evict", str(tmp_path / "fifo"), str(tmp_path / "none"))
    assert r.code == 1 and r.err == "pmaps: 2 paths not counted: 1 not found (e.g. %s); 1 special (e.g. %s)\n" % (
        tmp_path / "none", tmp_path / "fifo"), r.err


@needs_root
@needs_cs
def test_unreadable_hidden_and_evict_without_write_access(public_dir):
    """As nobody: an unreadable file, and a readable one whose cache the kernel hides (not the
    owner, no write access: cachestat says EPERM, mincore would say "all resident") are both
    skipped as permission; nobody's own file is counted; --evict refuses what it cannot write."""
    t = public_dir
    secret, other, mine = t / "secret", t / "other", t / "mine"
    for p, mode in ((secret, 0o600), (other, 0o644), (mine, 0o644)):
        cold(p, 4 * PAGE)
        p.chmod(mode)
        read_pages(p, 0, 2)
    os.chown(mine, 65534, 65534)
    r = pmaps_cmd("files", "-r", "--bytes", str(t), user=True)
    rows = r.stdout.splitlines()[1:-1]
    assert [x.split()[-1] for x in rows] == [str(mine)] and rows[0].split()[1] == str(2 * PAGE)
    assert "2 paths not counted: 2 permission" in r.stderr
    for p in (secret, other):
        r = pmaps_cmd("files", "--mincore", str(p), user=True, check=False)
        assert r.returncode == 1 and "permission" in r.stderr
    r = pmaps_cmd("files", "--evict", str(other), user=True, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "1 path not counted: 1 permission" in r.stderr
    assert fincore([str(other)])[str(other)] == 2 * PAGE  # nothing evicted
    r = pmaps_cmd("files", "--evict", "--bytes", str(mine), user=True)
    assert f"evicted 1 file: cached {2 * PAGE} before, 0 after" in r.stderr
    assert fincore([str(mine)])[str(mine)] == 0


CHILD = r"""
import mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
os.unlink(path)
print(fd, flush=True)
sys.stdin.read()
"""


@needs_root
@needs_cs
def test_deleted_but_open_file(run, tmp_path):
    path = tmp_path / "gone.dat"
    cold(path, 16 * PAGE)
    read_pages(path, 4, 3)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        fd = int(p.stdout.readline())  # type: ignore[union-attr]
        assert not path.exists()
        maps = Path(f"/proc/{p.pid}/maps").read_text().splitlines()
        rng = next(line.split()[0] for line in maps if line.endswith("gone.dat (deleted)"))
        for via in (f"/proc/{p.pid}/fd/{fd}", f"/proc/{p.pid}/map_files/{rng}"):
            (row,) = files_json(run, "--bytes", via)["files"]
            assert row["path"] == via and row["size"] == 16 * PAGE and row["resident"] == 3 * PAGE
        # --owners: the child maps it and holds it open; a file nobody uses has no owner
        other = tmp_path / "unused.dat"
        cold(other, PAGE)
        doc = files_json(run, "--owners", f"/proc/{p.pid}/fd/{fd}", str(other))
        assert [f["owners"] for f in doc["files"]] == [[p.pid], []]
        r = run("files", "--owners", f"/proc/{p.pid}/fd/{fd}")
        assert r.out.splitlines()[0].split()[-2:] == ["PROCS", "PATH"] and r.out.splitlines()[1].split()[-2] == "1"
    finally:
        p.kill()
        p.wait()


def test_not_found_and_directory_without_r(run, tmp_path):
    r = run("files", str(tmp_path / "nope"))
    assert r.code == 1 and r.err.count("\n") == 1 and "not found" in r.err
    r = run("files", str(tmp_path))
    assert r.code == 1 and "use -r" not in r.err and "directory" in r.err


def test_hostile_names_cannot_forge_lines(run, tmp_path):
    evil = tmp_path / "a\nb\x1b[2Jc\\d"
    evil.write_bytes(b"x")
    r = run("files", str(evil))
    assert r.code == 0
    assert len(r.out.splitlines()) == 3  # header, row, total
    assert "a\\x0ab\\x1b[2Jc\\\\d" in r.out
    bad = os.fsencode(str(tmp_path)) + b"/\xff\xfe"
    with open(bad, "wb") as f:
        f.write(b"x")
    r = run("files", "-r", str(tmp_path))
    assert "\\xff\\xfe" in r.out
    doc = files_json(run, "-r", str(tmp_path))
    assert len(doc["files"]) == 2


@needs_cs
def test_ten_thousand_files_top_n_is_exact(run, tmp_path):
    """--top against an independent mincore walk, on a tree of 10,000 files in 100 directories."""
    rng = np.random.default_rng(12)
    t = tmp_path / "big"
    sizes = rng.integers(1, 9, 10_000) * PAGE
    reads = rng.integers(0, 9, 10_000)
    data = os.urandom(8 * PAGE)
    paths = []
    for i in range(10_000):
        d = t / f"d{i // 100:03d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        p = d / f"f{i:05d}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data[: sizes[i]])
        os.close(fd)
        paths.append(str(p))
    os.sync()
    for i, p in enumerate(paths):
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for k in range(min(int(reads[i]), int(sizes[i]) // PAGE)):
            os.pread(fd, 1, k * PAGE)
        os.close(fd)
    # The machine is shared: reclaim may drop a page between two reads. Compare only a pmaps run
    # framed by two equal independent walks (nothing changed meanwhile).
    for _ in range(5):
        before = {p: mincore_resident(p) for p in paths}
        doc = files_json(run, "-r", "--top", "25", str(t))
        truth = {p: mincore_resident(p) for p in paths}
        if truth == before:
            break
    else:
        pytest.fail("the page cache of the test tree kept changing")
    assert doc["total"]["files"] == 10_000
    best = sorted(truth.values(), reverse=True)[:25]
    assert [f["resident"] for f in doc["files"]] == best
    assert all(truth[f["path"]] == f["resident"] for f in doc["files"])
    assert doc["total"]["resident"] == sum(truth.values())
    # and the library: the same fold without the CLI
    rep = summarize(pc.scan_files([str(t)], recursive=True), top=3)
    assert [r["resident"] for r in rep.dicts()] == best[:3]


@needs_cs
def test_formats(run, tree):
    r = run("files", "-r", "--format", "csv", str(tree))
    lines = r.out.splitlines()
    assert lines[0] == "path,size,resident,resident_pct,dirty,writeback,evicted,recently_evicted"
    assert len(lines) == 6
    r = run("files", "-r", "--format", "ndjson", str(tree))
    recs = [json.loads(x) for x in r.out.splitlines()]
    assert len(recs) == 5 and all(x["schema"] == "pmaps-files/1" for x in recs)
    r = run("files", "-r", "-k", str(tree / "half.dat"))
    assert r.out.splitlines()[0].startswith("SIZE (KiB) RESIDENT (KiB)")
    assert r.out.splitlines()[1].split()[:3] == ["256", "128", "50%"]


# -- golden: the text table from fixed inputs -------------------------------------------------------

def _golden_report(top: int = 0):
    cs = pc.CacheStat
    items = [pc.FileStat("/srv/db/base.dat", 1 << 30, 1, 1, cs(131072, 256, 16, 4096, 1024)),
             pc.FileStat("/srv/db/wal\n000\x1b[1m", 16 << 20, 1, 2, cs(4096, 4096, 0, 0, 0)),
             pc.FileStat("/srv/db/empty", 0, 1, 3, cs(0, 0, 0, 0, 0)),
             pc.FileStat("/srv/db/cold.idx", 5 * PAGE + 1, 1, 4, cs(1, 0, 0, 5, 5)),
             pc.Skipped("/srv/db/fifo", "special", "fifo")]
    return summarize(iter(items), top)


@pytest.mark.parametrize("name,unit,top,fmt", [("files.txt", "human", 0, "text"), ("files_k.txt", "k", 2, "text"),
                                               ("files.csv", "human", 0, "csv")])
def test_golden(name, unit, top, fmt):
    import io

    from pmaps.render import write
    from pmaps.render.files import FilesView

    buf = io.StringIO()
    write(FilesView(_golden_report(top), PAGE, "cachestat"), buf, fmt, unit)
    path = Path(__file__).parent / "golden" / name
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(buf.getvalue())
    assert buf.getvalue() == path.read_text(), f"{name} differs; PMAPS_BLESS=1 to accept"


def test_top_keeps_the_largest_in_walk_order_on_ties():
    cs = pc.CacheStat
    items = [pc.FileStat(f"/f{i}", 10 * PAGE, 1, i, cs(c)) for i, c in enumerate([3, 5, 5, 1, 5, 0])]
    rep = summarize(iter(items), top=3)
    assert [r.path for r in rep.rows] == ["/f1", "/f2", "/f4"]
    assert rep.total["resident"] == 19 * PAGE and rep.nfiles == 6


@pytest.mark.parametrize("method", ["cachestat", "mincore"])
@pytest.mark.parametrize("owners", [False, True])
def test_streamed_json_is_json_dumps_of_the_rows(method, owners):
    """JSON and NDJSON are written by hand, row by row, as the walk goes: byte for byte what
    json.dumps makes of the file_row dicts and the totals (odd paths, empty files, None counts)."""
    import io

    from pmaps.analysis.files import file_row
    from pmaps.render import write
    from pmaps.render.files import KEYS, FilesView
    from pmaps.render.output import dumps

    def cs(*v):
        return pc.CacheStat(*v) if method == "cachestat" else pc.CacheStat(v[0])

    items = [pc.FileStat("/srv/a b/\u00e9t\u00e9\udcff\n\x1b\"q\\", 3 * PAGE + 1, 7, 1, cs(4, 1, 0, 2, 1)),
             pc.Skipped("/srv/fifo", "special", "fifo"),
             pc.FileStat("/srv/empty", 0, 7, 2, cs(0, 0, 0, 0, 0)),
             pc.Skipped("/srv/secret", "permission", pc.HIDDEN),
             pc.FileStat("/srv/big", 1 << 40, 7, 3, cs(1 << 26, 5, 6, 7, 8))]
    users = {(7, 1): {30, 4}, (7, 3): set()} if owners else None
    files = [x for x in items if isinstance(x, pc.FileStat)]
    keys = (*KEYS, "owners") if owners else KEYS  # the documented order (docs/formats.md)
    rows = [{k: r[k] for k in keys} for r in (file_row(f, users) for f in files)]
    unknown = method == "mincore"
    total = {"files": 3, "size": 3 * PAGE + 1 + (1 << 40), "resident": (4 + (1 << 26)) * PAGE,
             "resident_pct": round(100.0 * (4 + (1 << 26)) / (4 + (1 << 28)), 1),
             **{k: None if unknown else v * PAGE for k, v in (("dirty", 6), ("writeback", 6), ("evicted", 9),
                                                               ("recently_evicted", 9))}}
    expect = {"schema": "pmaps-files/1", "page_size": PAGE, "method": method, "files": rows, "total": total,
              "skipped": {"permission": 1, "special": 1}}
    for stream in (True, False):
        rep = summarize(iter(items), users=users, stream=stream)
        buf = io.StringIO()
        write(FilesView(rep, PAGE, method), buf, "json")
        assert buf.getvalue() == dumps(expect) + "\n"
        rep = summarize(iter(items), users=users, stream=stream)
        buf = io.StringIO()
        write(FilesView(rep, PAGE, method), buf, "ndjson")
        assert buf.getvalue() == "".join(dumps({"schema": "pmaps-files/1", **r}) + "\n" for r in rows)
    assert rows[0]["owners"] == [4, 30] if owners else "owners" not in rows[0]


def test_json_percent_is_the_rounded_float():
    """json_rows writes resident_pct as f"{x:.1f}"; file_row (and json.dumps) as repr(round(x, 1))."""
    from pmaps.analysis.files import resident_pct

    for pages in range(1, 700):
        for res in range(pages + 2):  # a large folio past EOF: over 100%, capped
            x = min(100.0, 100.0 * res / pages)
            assert f"{x:.1f}" == repr(resident_pct(res, pages * PAGE)), (res, pages)


def test_streamed_report_of_a_walk_without_files_is_complete_at_once():
    rep = summarize(iter([pc.Skipped("/x", "special", "fifo")]), stream=True)
    assert rep.empty and rep.nfiles == 0 and rep.skipped == {"special": ["/x"]} and list(rep.rows) == []
    rep = summarize(iter([pc.Skipped("/x", "special", "fifo"), pc.FileStat("/y", 1, 1, 1, pc.CacheStat(1, 0, 0, 0, 0)),
                          pc.Skipped("/z", "vanished")]), stream=True)
    assert not rep.empty and list(rep.skipped) == ["special"]  # read up to the first file
    assert [f.path for f in rep.rows] == ["/y"] and rep.skipped == {"special": ["/x"], "vanished": ["/z"]}
    assert rep.nfiles == 1 and rep.total["resident"] == PAGE


@needs_cs
def test_symlinks_loops_and_other_filesystems(run, tree):
    shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="pmaps-files-"))
    try:
        (shm / "on_tmpfs").write_bytes(b"y" * PAGE)
        (tree / "sub" / "tmpfs").symlink_to(shm)
        (tree / "sub" / "up").symlink_to("..")
        base = {str(tree / n) for n in ("half.dat", "sparse.dat", "empty", "sub/cold.dat", "sub/odd.dat")}
        doc = files_json(run, "-r", str(tree))
        assert {f["path"] for f in doc["files"]} == base  # no symlink followed
        doc = files_json(run, "-r", "-L", str(tree))
        # -L: the link to half.dat counts as a file of its own; the loop is cut; tmpfs not entered
        assert {f["path"] for f in doc["files"]} == base | {str(tree / "link")}
        assert doc["skipped"]["loop"] == 1
        doc = files_json(run, "-r", "-L", "--xdev=no", str(tree))
        assert str(tree / "sub" / "tmpfs" / "on_tmpfs") in {f["path"] for f in doc["files"]}
    finally:
        import shutil

        shutil.rmtree(shm)


# -- --pages: the 2007 view of a file's resident pages ----------------------------------------------

def resident_set(path: Path | str) -> set[int]:
    """Independent mincore: the resident page indexes of a file."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mm:
        a = np.frombuffer(mm, np.uint8)
        vec = np.zeros((size + PAGE - 1) // PAGE, np.uint8)
        assert libc.mincore(ctypes.c_void_p(a.ctypes.data), ctypes.c_size_t(size), ctypes.c_void_p(vec.ctypes.data)) == 0
        del a
    return set(np.flatnonzero(vec & 1).tolist())


def page_lines(out: str) -> dict[int, list[str]]:
    """--pages text -> {page index: the rest of its range line}, one entry per page."""
    pages: dict[int, list[str]] = {}
    for line in out.splitlines()[1:]:
        index, count, *rest = line.split()
        for i in range(int(index), int(index) + int(count)):
            pages[i] = rest
    return pages


MAPPER = r"""
import mmap, sys
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 0)
m.madvise(mmap.MADV_RANDOM)
for i in (40, 41, 42):
    m[i * 4096]                     # map (read) pages 40-42
m[41 * 4096] = 7                    # and dirty page 41
print(m.find(b"") , flush=True)
sys.stdin.read()
"""


@needs_root
def test_pages_never_reads_a_page_in(run, tmp_path):
    path = tmp_path / "p.dat"
    cold(path, 256 * PAGE)
    for first, count in ((0, 3), (10, 1), (40, 3), (200, 8)):
        read_pages(path, first, count)
    before = resident_set(path)
    assert before == {0, 1, 2, 10, 40, 41, 42, *range(200, 208)}
    p = subprocess.Popen([sys.executable, "-c", MAPPER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        p.stdout.readline()  # type: ignore[union-attr]
        r = run("files", "--pages", str(path))
        assert r.code == 0, r.err
        assert r.out.splitlines()[0] == str(path)
        pages = page_lines(r.out)
        assert set(pages) == before == resident_set(path)  # exactly the resident pages; none read in
        assert {i: rest[1] for i, rest in pages.items() if rest[1] != "0"} == {40: "1", 41: "1", 42: "1"}
        assert pages[41][0][5] == "D" and pages[40][0][5] == "_"  # RFC letters Y R A U P D W
        # --pfn: the PFN of page 41 is the one the mapper's own pagemap shows
        r = run("files", "--pages", "--pfn", "--format", "json", str(path))
        doc = json.loads(r.out)
        assert doc["schema"] == "pmaps-file-pages/1"
        rng = next(x for x in doc["files"][0]["ranges"] if x["index"] <= 41 < x["index"] + x["count"])
        pfn41 = rng["pfn"] + 41 - rng["index"]
        line = next(ln for ln in Path(f"/proc/{p.pid}/maps").read_text().splitlines() if ln.endswith(str(path)))
        start = int(line.split("-")[0], 16)
        with open(f"/proc/{p.pid}/pagemap", "rb") as pm:
            pm.seek((start // PAGE + 41) * 8)
            entry = int.from_bytes(pm.read(8), "little")
        assert entry & ((1 << 55) - 1) == pfn41
    finally:
        p.kill()
        p.wait()


@needs_root
def test_pages_cgroup_is_the_readers_memcg(run, tmp_path):
    path = tmp_path / "c.dat"
    cold(path, 16 * PAGE)
    read_pages(path, 2, 4)  # charged now, to this test process's memory cgroup
    line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in x or x.startswith("0::"))
    mine = line.split(":", 2)[2]
    r = run("files", "--pages", "--cgroup", str(path))
    assert r.code == 0, r.err
    assert {i: rest[-1] for i, rest in page_lines(r.out).items()} == {i: mine for i in range(2, 6)}


def test_pages_survive_a_file_truncated_meanwhile(tmp_path, monkeypatch):
    """mincore said resident, then the file shrank: MADV_POPULATE_READ fails instead of SIGBUS."""
    from pmaps.analysis.files import file_pages

    path = tmp_path / "t.dat"
    path.write_bytes(os.urandom(8 * PAGE))
    real = pc.mincore_map

    def then_truncate(mm, size, fd=None):
        res = real(mm, size, fd)
        os.truncate(path, PAGE)
        return res

    monkeypatch.setattr(pc, "mincore_map", then_truncate)
    fp = file_pages(str(path))
    assert fp.pages.vpn.tolist() in ([0], [])  # never pages past the new end of file


def test_pages_options(run, tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    for argv in (["--pfn"], ["--cgroup"], ["--flags=all"], ["--pages", "--format", "csv"], ["--pages", "--top", "3"]):
        r = run("files", *argv, str(f))
        assert r.code == 2 and r.err.count("\n") == 1, argv


@pytest.mark.parametrize("name,full,pfn,cg", [("file_pages.txt", False, False, False),
                                              ("file_pages_all.txt", True, True, True)])
def test_golden_pages(name, full, pfn, cg):
    import io

    from pmaps.analysis.files import FilePages
    from pmaps.kernel.kpage import kpf_mask
    from pmaps.model import Known, Pages
    from pmaps.render import write
    from pmaps.render.filepages import FilePagesView

    idx = np.array([0, 1, 2, 3, 9, 10, 11], np.uint64)
    pm = (np.array([500, 501, 502, 700, 800, 801, 900], np.uint64) | np.uint64(1 << 63) | np.uint64(1 << 61))
    f_clean = kpf_mask("referenced", "uptodate", "lru", "active")
    f_dirty = f_clean | kpf_mask("dirty")
    kflags = np.array([f_clean] * 3 + [f_dirty] + [f_clean] * 3, np.uint64)
    kcount = np.array([0, 0, 0, 2, 1, 1, 1], np.uint64)
    pages = Pages(idx, pm, np.zeros(7, np.uint16), kflags, kcount)
    cgs = np.array([40, 40, 41, 41, 41, 0, 0], np.uint64) if cg else None
    fp = FilePages("/srv/a\nb.dat", 12 * PAGE, pages, Known(pfn=True, flags=True, count=True), cgs,
                   {40: "/jobs/a", 41: "/jobs/b", 0: "-"})
    buf = io.StringIO()
    write(FilePagesView([fp], full, pfn, cg), buf, "text", "human")
    path = Path(__file__).parent / "golden" / name
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(buf.getvalue())
    assert buf.getvalue() == path.read_text(), f"{name} differs; PMAPS_BLESS=1 to accept"


def test_progress_shows_only_after_a_second():
    import io

    from pmaps.commands.files import Progress

    err = io.StringIO()
    pr = Progress(err, True)
    pr.tick(256)
    assert pr.bar is None  # a quick walk shows nothing
    pr.t0 -= 2.0  # as if the walk had begun two seconds ago
    pr.tick(512)
    assert pr.bar is not None
    pr.stop()
