"""pmaps diff: exact page changes of a child that changes on cue; JSON round trip; golden table."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import PAGE
from memchild import MemChild
from pmaps.analysis.diff import KINDS, Diff, VmaDiff, diff_samples
from pmaps.collector import Process, take_sample
from pmaps.kernel.maps import Vma
from pmaps.model.state import S_EXCLUSIVE, S_PRESENT
from pmaps.render.diff import change_dicts, to_json
from pmaps.store.recording import load_sample

GOLDEN = Path(__file__).parent / "golden"
A, B = str(GOLDEN / "time_a.parquet"), str(GOLDEN / "time_b.parquet")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags of a live child)")


def changes(doc: dict, start: int) -> list[tuple[int, int, str]]:
    (v,) = [v for v in doc["vmas"] if v["start"] == start]
    return [((c["addr"] - start) // PAGE, c["pages"], c["change"]) for c in v["changes"]]


@needs_root
def test_exact_changes_live():
    with MemChild(["a:anon:256K", "b:anon:512K:skip=0-128", "z:zero:64K"]) as mc, Process(mc.pid) as proc:
        before = take_sample(proc)
        mc.cmd("touch b 10 20")  # 10 new pages
        mc.cmd("free a 0 5")  # 5 pages freed
        mc.cmd("free a 30 31")
        mc.cmd("touch z 3 7")  # zero page -> private page: written
        after = take_sample(proc)
    doc = to_json(diff_samples(before, after))
    r = mc.regions
    assert changes(doc, r["a"]["start"]) == [(0, 5, "freed"), (30, 1, "freed")]
    assert changes(doc, r["b"]["start"]) == [(10, 10, "present")]
    assert changes(doc, r["z"]["start"]) == [(3, 4, "dirtied")]
    (c,) = [v for v in doc["vmas"] if v["start"] == r["z"]["start"]][0]["changes"]
    assert "zero_page" in c["before"] and "zero_page" not in c["after"] and "anon" in c["after"]
    (f,) = [v for v in doc["vmas"] if v["start"] == r["a"]["start"]][0]["changes"][:1]
    assert f["after"] == [] and "present" in f["before"]


@needs_root
def test_cli_live_pid_vs_recording(run, tmp_path):
    with MemChild(["a:anon:128K"]) as mc:
        assert run("record", str(mc.pid), "-o", str(tmp_path / "r"), "--count", "1", "-q").code == 0
        mc.cmd("free a 0 3")
        res = run("diff", str(tmp_path / "r"), str(mc.pid), "--format", "json")
    assert res.code == 0, res.err
    assert changes(json.loads(res.out), mc.regions["a"]["start"]) == [(0, 3, "freed")]


def test_json_round_trip():
    d = diff_samples(load_sample(A), load_sample(B))
    doc = json.loads(json.dumps(to_json(d)))
    for v, jv in zip(d.vmas, doc["vmas"]):
        got = [(c["addr"], c["pages"], KINDS.index(c["change"])) for c in jv["changes"]]
        assert got == list(zip(v.addr.tolist(), v.pages.tolist(), v.kind.tolist()))
        assert jv["totals"] == v.totals()
    assert doc["totals"] == d.totals()


def test_identical_samples_no_change(run):
    r = run("diff", A, A)
    assert r.code == 0 and "no page changed state" in r.out


@pytest.mark.parametrize("fmt", ["text", "json", "csv", "ndjson"])
def test_golden(run, fmt, monkeypatch):
    monkeypatch.chdir(GOLDEN)
    r = run("diff", "time_a.parquet", "time_b.parquet", "--format", fmt)
    assert r.code == 0, r.err
    path = GOLDEN / f"diff.{'txt' if fmt == 'text' else fmt}"
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(r.out)
    assert r.out == path.read_text(), f"{path.name} differs; PMAPS_BLESS=1 to accept"


def test_corrupt_sample_one_line(run, tmp_path):
    bad = tmp_path / "sample-000000.parquet"
    bad.write_bytes(Path(A).read_bytes()[:200])
    r = run("diff", str(bad), A)
    assert r.code == 6 and r.err.count("\n") == 1 and "corrupt or truncated" in r.err


def test_sweep_matches_per_page_reference():
    """The interval sweep agrees with a brute-force per-page comparison (on the golden pair)."""
    a, b = load_sample(A), load_sample(B)
    d = diff_samples(a, b)

    def pages(s):
        out = {}
        for v, n, st, mc in zip(s.vpn.tolist(), s.count.tolist(), s.state.tolist(), s.mapcount.tolist()):
            for p in range(v, v + n):
                out[p] = (st & int(mask), mc)
        return out

    from pmaps.analysis.diff import VOLATILE
    mask = a.known.mask() & b.known.mask() & ~VOLATILE
    pa, pb = pages(a), pages(b)
    want = {p for p in set(pa) | set(pb) if pa.get(p, (0, 0)) != pb.get(p, (0, 0))}
    got = {int(x >> 12) + i for v in d.vmas for x, n in zip(v.addr.tolist(), v.pages.tolist()) for i in range(n)}
    assert got == want


def test_diff_takes_snapshots(run, tmp_path):
    """Every file pmaps writes is a diff input: two `pmaps save` snapshots compare page-exactly."""
    from pmaps.model import Sample
    from pmaps.store import load

    golden = str(Path(__file__).parent / "golden" / "layout.npz")
    r = run("diff", golden, golden)
    assert r.code == 0, r.err
    assert "no page changed state" in r.out
    snap = load(golden)
    s = Sample.of_snapshot(snap)
    assert int(s.count.sum()) == sum(len(p) for _, p in snap.chunks()) > 0


def test_diff_takes_a_snapshot_of_no_pages(run, tmp_path):
    """A snapshot with no resident page is a file to compare, as A or as B (a Sample of no ranges
    has length 0: it was taken for 'not a file' as B)."""
    import dataclasses

    from pmaps.model import Pages
    from pmaps.store import load, save

    golden = str(Path(__file__).parent / "golden" / "layout.npz")
    empty = str(tmp_path / "zero.npz")
    save(dataclasses.replace(load(golden), pages=Pages.empty()), empty)
    for a, b in ((golden, empty), (empty, golden)):
        r = run("diff", a, b, "--format", "json")
        assert r.code == 0, r.err


def test_global_output_options_before_the_command(run):
    golden = str(Path(__file__).parent / "golden" / "sysscan.npz")
    a = run("-q", "top", "-n", "2", "--load-scan", golden)
    b = run("top", "-q", "-n", "2", "--load-scan", golden)
    assert a.code == b.code == 0 and a.out == b.out and a.err == b.err


def test_saved_vs_live_either_order(run, tmp_path):
    """A snapshot and a live PID, in either order (the file is read while the process is
    sampled): the changes as between the two, and a bad file's error before a gone PID's."""
    with MemChild(["a:anon:128K"]) as mc:
        saved = str(tmp_path / "s.npz")
        assert run("save", str(mc.pid), "-o", saved, "-q").code == 0
        mc.cmd("free a 0 3")
        fwd = run("diff", saved, str(mc.pid), "--format", "json")
        back = run("diff", str(mc.pid), saved, "--format", "json")
    assert fwd.code == back.code == 0, fwd.err + back.err
    start = mc.regions["a"]["start"]
    assert changes(json.loads(fwd.out), start) == [(0, 3, "freed")]
    assert changes(json.loads(back.out), start) == [(0, 3, "present")]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    gone = "4194304"  # past PID_MAX_LIMIT: never a live process
    r = run("diff", str(bad), gone)
    assert r.code == 6 and r.err.count("\n") == 1 and "corrupt snapshot" in r.err, r.err
    r = run("diff", gone, str(bad))
    assert r.code != 0 and r.err.count("\n") == 1 and "corrupt" not in r.err, r.err
    r = run("diff", str(tmp_path / "missing.npz"), str(os.getpid()))
    assert r.code == 2 and "nor an existing sample file" in r.err, r.err


def _hand_diff() -> Diff:
    """A Diff of three VMAs made by hand: a hostile path, unknown map counts, an absent page's empty
    state, a VMA new in B and one gone."""
    import numpy as np

    def vd(vma: Vma, status: str, rows: list[tuple[int, int, int, int, int, int, int]]) -> VmaDiff:
        cols = list(zip(*rows))
        u, i = np.uint64, np.int64
        return VmaDiff(vma, status, np.array(cols[0], u), np.array(cols[1], i), np.array(cols[2], u),
                       np.array(cols[3], u), np.array(cols[4], i), np.array(cols[5], i), np.array(cols[6], i))

    p, x = 1 << S_PRESENT, 1 << S_EXCLUSIVE
    evil = Vma(0x1000, 0x9000, "rw-p", 0, "fe:00", 7, "/tmp/evil\n\x1b[2Jname \u00e9")
    return Diff("a.npz", "B \x1b[1m", 1.5, 2.25, [
        vd(evil, "both", [(0x1000, 2, 0, p | x, 0, 1, 0), (0x4000, 1, p, 0, -1, 0, 1), (0x8000, 300, p, p | x, 2, 1, 5)]),
        vd(Vma(0x10000, 0x20000, "r--p", 0x3000, "00:00", 0, ""), "new", [(0x10000, 16, 0, p, 0, -1, 0)]),
        vd(Vma(0x30000, 0x31000, "---p", 0, "00:00", 0, "[gone]"), "gone", [(0x30000, 1, p, 0, 1, 0, 1)]),
    ])


def test_json_streamed_is_the_document():
    """DiffView writes its JSON a VMA at a time: the bytes of json.dumps(to_json(d), indent=1)."""
    import io

    from pmaps.render.diff import DiffView
    from pmaps.render.output import write

    for d in (_hand_diff(), diff_samples(load_sample(A), load_sample(B)), Diff("x", "y", 0.0, 0.0)):
        out = io.StringIO()
        write(DiffView(d), out, "json")
        assert out.getvalue() == json.dumps(to_json(d), indent=1) + "\n"


def test_text_escapes_and_aligns_each_vma():
    """Text: each VMA's maps line escaped (its path is the target's text), then its own table, aligned
    as write_table aligns it (the reference here: one write_table per VMA, as before)."""
    import io

    from pmaps.render.diff import KIND_TITLES, letters, write_text
    from pmaps.render.table import printable, write_table
    from pmaps.render.units import fmt_bytes

    d = _hand_diff()
    out = io.StringIO()
    write_text(out, d)
    text = out.getvalue()
    assert "\x1b" not in text and "/tmp/evil\\x0a\\x1b[2Jname \u00e9" in text
    want = io.StringIO()
    for v in d.vmas:
        want.write(printable(v.vma.maps_line()) + {"both": "", "new": "  [new in B]", "gone": "  [gone in B]"}[v.status]
                   + "\n")
        rows = []
        for c, b, a in zip(change_dicts(v), v.before.tolist(), v.after.tolist()):
            mb, ma = c["mapcount_before"], c["mapcount_after"]
            mc = "" if mb == ma else f" {'?' if mb is None else mb}->{'?' if ma is None else ma}"
            rows.append([f"  {c['addr']:x}", KIND_TITLES[c["change"]], str(c["pages"]), fmt_bytes(c["bytes"]),
                         letters(b), letters(a) + mc])
        wb = max(len("BEFORE"), *(len(r[4]) for r in rows))
        for r in rows:
            r[4] = r[4].ljust(wb)
        write_table(want, ["  ADDR", "CHANGE", "PAGES", "SIZE", "BEFORE".ljust(wb), "AFTER"], rows, left=2)
    body = text.split("\n", 2)[2]
    assert body.startswith(want.getvalue()) and "?->0" in body and "0->?" in body


@needs_root
def test_cli_saved_and_live_either_way(run, tmp_path):
    """A file and a live PID, in either order (the file is loaded while the process is sampled)."""
    with MemChild(["a:anon:128K"]) as mc:
        snap = str(tmp_path / "s.npz")
        assert run("save", str(mc.pid), "-o", snap, "-q").code == 0
        mc.cmd("free a 0 3")
        fwd = run("diff", snap, str(mc.pid), "--format", "json")
        mc.cmd("touch a 0 1")
        rev = run("diff", str(mc.pid), snap, "--format", "json")
    assert fwd.code == 0 and rev.code == 0, (fwd.err, rev.err)
    start = mc.regions["a"]["start"]
    assert changes(json.loads(fwd.out), start) == [(0, 3, "freed")]
    assert changes(json.loads(rev.out), start) == [(1, 2, "present")]


def test_cli_errors_come_in_the_order_of_a_then_b(run, tmp_path):
    """With one file and one PID, A's error is reported first, as when A was read before B."""
    gone = "999999999"
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    r = run("diff", str(tmp_path / "missing"), gone)
    assert r.code != 0 and "not a process ID, nor an existing sample file" in r.err and "Traceback" not in r.err
    r = run("diff", str(bad), gone)
    assert r.code != 0 and "bad.npz" in r.err and gone not in r.err, r.err
    r = run("diff", gone, str(bad))
    assert r.code != 0 and gone in r.err and "bad.npz" not in r.err, r.err
