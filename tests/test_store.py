"""Round trips: snapshot files and the JSON/NDJSON schemas."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import pmaps
from pmaps.store import snapshot as store
from pmaps.errors import BadSnapshot
from pmaps.kernel import pagemap as pmb
from pmaps.model import state_names

INPUT = Path(__file__).parent / "golden" / "layout.npz"


def _same(a: pmaps.Snapshot, b: pmaps.Snapshot, pfns: bool) -> None:
    assert (a.pid, a.comm, a.vmas, a.known.flags, a.known.count) == (b.pid, b.comm, b.vmas, b.known.flags,
                                                                      b.known.count)
    for col in ("vpn", "cat", "kflags", "kcount"):
        assert np.array_equal(getattr(a.pages, col), getattr(b.pages, col)), col
    if pfns:
        assert np.array_equal(a.pages.pm, b.pages.pm)
    else:
        assert (b.pages.pfn == 0).all()
        assert np.array_equal(a.pages.pm & ~pmb.PM_PFN_MASK, b.pages.pm & ~pmb.PM_PFN_MASK)


@pytest.mark.parametrize("keep", [True, False])
def test_snapshot_roundtrip(tmp_path, keep):
    snap = store.load(INPUT)
    out = tmp_path / "s.npz"
    store.save(snap, out, keep_pfns=keep)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    _same(snap, store.load(out), keep)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_live_snapshot_roundtrip(tmp_path):
    snap = pmaps.collect(os.getpid())
    store.save(snap, tmp_path / "me.npz")
    back = store.load(tmp_path / "me.npz")
    _same(snap, back, pfns=False)
    assert back.known.pfn is False  # PFNs were stripped, and the file says so


def test_live_snapshot_json_from_its_table(tmp_path, monkeypatch):
    """A live snapshot's VMA list is written from its maps table (codec.vmas_json): the file's
    metadata is the same bytes as json.dumps of its Vma list, hostile path text included."""
    import io
    import zipfile

    from memchild import MemChild

    from pmaps.collector import Process

    odd = tmp_path / 'we"ird\\ n\u00e9\t'
    odd.mkdir()
    monkeypatch.setenv("MEMCHILD_TMPDIR", str(odd))
    with MemChild(["a:anon:64K", "f:file:16K"]) as m, Process(m.pid) as p:
        snap = p.snapshot()
    assert snap.table is not None and any(v.path.startswith(str(odd)) for v in snap.vmas)
    a = store.dumps(snap)
    b = store.dumps(pmaps.Snapshot(snap.pid, snap.comm, snap.vmas, snap.pages, snap.known, snap.time))
    meta = [zipfile.ZipFile(io.BytesIO(d)).read("meta.npy") for d in (a, b)]
    assert meta[0] == meta[1]
    _same(snap, store.loads(a), pfns=False)
    with np.load(io.BytesIO(a)) as z:  # numpy itself reads the members written at pmaps' own levels
        assert json.loads(bytes(z["meta"]))["pid"] == snap.pid and len(z["vpn"]) == len(snap.pages)


def test_truncated_and_tampered_files(tmp_path):
    data = INPUT.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(BadSnapshot):
            store.loads(data[:cut])
    import io

    with np.load(INPUT) as z:
        good = {k: z[k] for k in z.files}
    meta = json.loads(bytes(good["meta"]))

    def npz(**arrays) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def meta_bytes(m) -> np.ndarray:
        return np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)

    bad_schema = npz(**{**good, "meta": meta_bytes({**meta, "schema": "pmaps-snapshot/9"})})
    short_col = npz(**{**good, "kcount": good["kcount"][:-1]})
    no_vmas = npz(**{**good, "meta": meta_bytes({k: v for k, v in meta.items() if k != "vmas"})})
    unsorted = npz(**{**good, "vpn": good["vpn"][::-1].copy()})
    for data in (bad_schema, short_col, no_vmas, unsorted):
        with pytest.raises(BadSnapshot):
            store.loads(data)
    store.loads(npz(**good))  # the untampered rebuild loads


def test_json_roundtrip(run):
    """Every range in the JSON equals the model's, field by field."""
    snap = store.load(INPUT)
    r = run("--format", "json", "--pfn", "--swap", str(INPUT))
    doc = json.loads(r.out)
    assert doc["schema"] == "pmaps/1"
    (proc,) = doc["processes"]
    assert proc["pid"] == snap.pid and proc["comm"] == snap.comm
    assert [(v["start"], v["end"], v["perms"], v["offset"], v["dev"], v["inode"], v["path"]) for v in proc["vmas"]] \
        == [(v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path) for v in snap.vmas]
    for i, (vma, jv) in enumerate(zip(snap.vmas, proc["vmas"])):
        rg = snap.ranges(i, full=True, with_pfn=True, swap=True)
        assert [x["addr"] for x in jv["ranges"]] == (rg.vpn * 4096).tolist()
        assert [x["count"] for x in jv["ranges"]] == rg.count.tolist()
        assert [x["index"] for x in jv["ranges"]] == (rg.vpn - vma.start // 4096 + vma.offset // 4096).tolist()
        assert [x["names"] for x in jv["ranges"]] == [state_names(s) for s in rg.state.tolist()]
        for x, pfn, mc, st in zip(jv["ranges"], rg.pfn.tolist(), rg.mapcount.tolist(), rg.state.tolist()):
            sw = "swapped" in x["names"]
            assert x["pfn"] == (None if sw else pfn) and x["mapcount"] == (None if sw else mc)


def test_ndjson_matches_json(run):
    j = json.loads(run("--format", "json", str(INPUT)).out)["processes"][0]
    lines = [json.loads(ln) for ln in run("--format", "ndjson", str(INPUT)).out.splitlines()]
    assert all(x["schema"] == "pmaps-vma/1" and x["pid"] == j["pid"] for x in lines)
    strip = [{k: v for k, v in x.items() if k not in ("schema", "pid", "comm")} for x in lines]
    assert strip == j["vmas"]


GOOD_VMAS = [[0x1000, 0x2000, "r--p", 0, "00:00", 0, ""], [0x2000, 0x5000, "rw-p", 4096, "fe:01", 12, "/x y\n"],
             [0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "00:00", (1 << 64) - 1, "[vsyscall]"]]
BAD_VMAS = [
    [[-4096, 0x2000, "r--p", 0, "00:00", 0, ""]], [[0x1000, 1 << 64, "r--p", 0, "00:00", 0, ""]],
    [[0x1000, 0x2000, "r--p", -1, "00:00", 0, ""]], [[0x1000, 0x2000, "r--p", 0, "00:00", 1 << 64, ""]],
    [[0x1000, 0x2000, "r--p", True, "00:00", 0, ""]], [[0x1000, 0x2000, "r--p", 0.0, "00:00", 0, ""]],
    [[0x1000, 0x1000, "r--p", 0, "00:00", 0, ""]], [[0x1001, 0x2000, "r--p", 0, "00:00", 0, ""]],
    [[0x1000, 0x3000, "r--p", 0, "00:00", 0, ""], [0x2000, 0x4000, "r--p", 0, "00:00", 0, ""]],
    [[0x1000, 0x2000, "r--p--x--", 0, "00:00", 0, ""]], [[0x1000, 0x2000, "r--p", 0, "0" * 33, 0, ""]],
    [[0x1000, 0x2000, "r--p", 0, "00:00", 0, "x" * 5000]], [[0x1000, 0x2000, "r--p", 0, "00:00", 0]], ["x"],
    [[0x1000, 0x2000, None, 0, "00:00", 0, ""]], [{"start": 0}],
]


def test_decode_vmas_at_once_and_one_by_one():
    """The VMA list's checks made column by column agree with the one-by-one loop that names the
    bad VMA: the same VMAs from good input, and both refuse every bad one."""
    from pmaps.store.codec import _vmas_checked_at_once, decode_vmas

    assert _vmas_checked_at_once(GOOD_VMAS) == decode_vmas(GOOD_VMAS) == [tuple(v) for v in GOOD_VMAS]
    assert _vmas_checked_at_once([]) == []
    for bad in BAD_VMAS:
        assert _vmas_checked_at_once(bad) is None, bad
        with pytest.raises((ValueError, TypeError)):
            decode_vmas(bad)


def test_decode_vma_table_columns():
    """A stored VMA list as columns (no Vma object per VMA) holds what decode_vmas' objects hold:
    the fields, one VMA, a take() of some, the JSON they are written as; bad lists are refused."""
    import numpy as np

    from pmaps.kernel.maps import VmaTable
    from pmaps.store.codec import decode_vma_table, decode_vmas, vmas_json

    t = decode_vma_table(GOOD_VMAS)
    assert "vmas" not in t.__dict__
    assert [t.vma(i) for i in range(len(t))] == [tuple(v) for v in GOOD_VMAS]
    assert "vmas" not in t.__dict__  # vma(i) made only VMA i
    assert t.take(np.array([2, 0])).vmas == [tuple(GOOD_VMAS[2]), tuple(GOOD_VMAS[0])]
    assert t.path == [v[6] for v in GOOD_VMAS] and t.named.tolist() == [False, True, True]
    assert "".join(vmas_json(t)) == "".join(vmas_json(VmaTable.of_vmas(decode_vmas(GOOD_VMAS))))
    assert t.vmas == decode_vmas(GOOD_VMAS) and len(decode_vma_table([])) == 0
    for bad in BAD_VMAS:
        with pytest.raises((ValueError, TypeError)):
            decode_vma_table(bad)


def test_snapshot_as_sample_without_vma_objects(tmp_path):
    """loads_sample (diff SAVED ...) makes the sample Sample.of_snapshot(loads(...)) makes, its
    VMAs as columns; a corrupt file is the same one-line error either way."""
    from pathlib import Path

    from pmaps.errors import BadSnapshot
    from pmaps.model import Sample
    from pmaps.store.snapshot import loads, loads_sample

    data = (Path(__file__).parent / "golden" / "layout.npz").read_bytes()
    want, got = Sample.of_snapshot(loads(data)), loads_sample(data)
    assert "vmas" not in got.table.__dict__
    for k in ("vma", "vpn", "count", "state", "mapcount"):
        assert (getattr(want, k) == getattr(got, k)).all() and getattr(want, k).dtype == getattr(got, k).dtype
    assert (want.pid, want.comm, want.known, want.time) == (got.pid, got.comm, got.known, got.time)
    assert got.vmas == want.vmas and len(got.vmas) > 0
    for cut in (100, len(data) // 2, len(data) - 10):
        with pytest.raises(BadSnapshot) as a:
            loads(data[:cut], "f")
        with pytest.raises(BadSnapshot) as b:
            loads_sample(data[:cut], "f")
        assert str(a.value) == str(b.value)


def test_vma_list_read_by_numpy_or_by_json():
    """loads_json_vmas: a snapshot's VMA list exactly as vmas_json writes it is read by numpy into
    the VMAs json.loads reads; any other text (an escaped path, a number with a leading zero, a
    key that only ends in "vmas", an out-of-order list) is json.loads', with its errors."""
    import json

    from pmaps.kernel.maps import Vma, VmaTable
    from pmaps.store.codec import decode_vma_table, loads_json_vmas, vmas_json

    vmas = [Vma(0x1000, 0x2000, "r--p", 0, "00:00", 0, ""), Vma(0x2000, 0x5000, "rw-p", 4096, "fe:01", 12, "/a, b], [c"),
            Vma(0x7000, 0x9000, "rw-s", 1 << 40, "103:02", 99, "[anon:x]"),
            Vma(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "00:00", (1 << 64) - 1, "[vsyscall]")]
    head = '{"schema": "s", "known": {"pfn": true}, "vmas": '
    text = head + "".join(vmas_json(VmaTable.of_vmas(vmas))) + "}"
    meta = loads_json_vmas(text.encode())
    assert isinstance(meta["vmas"], VmaTable) and decode_vma_table(meta["vmas"]).vmas == vmas
    assert {k: v for k, v in meta.items() if k != "vmas"} == {"schema": "s", "known": {"pfn": True}}
    others = [text.replace("/a, b], [c", '/a\\"b'),  # an escaped quote
              text.replace("[anon:x]", "\\u00e9"),
              text.replace(", 4096,", ", 04096,"),  # not JSON
              text.replace('"vmas": ', '"x\\"vmas": '),  # another key
              text.replace('"vmas": ', '"vmas": [], "v": '),
              head + "".join(vmas_json(VmaTable.of_vmas(vmas[::-1]))) + "}",  # out of order: json.loads', then refused
              text[:-1] + " }", text[:-1], text.replace('"known": {', '"known": {{')]
    for other in others:
        try:
            want: object = json.loads(other)
        except ValueError as e:
            want = str(e)
        try:
            got: object = loads_json_vmas(other.encode())
        except ValueError as e:
            got = str(e)
        assert got == want, other
