"""pmaps wss --format json: the rows' fast writer (render/wss.py) writes exactly the bytes of
json.dumps(document(), indent=1), on real scans of many VMAs and on hostile strings."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pmaps.analysis.wss as wss
import pmaps.render.wss as render_wss
from pmaps.analysis.wss import Ages, VmaWss, WssResult, measure, totals
from pmaps.kernel.maps import Vma
from pmaps.render.output import View
from pmaps.render.wss import WssView

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags, clear_refs of a child)")


def fast(view: WssView) -> str:
    out = io.StringIO()
    view.write_to(out, "json", "human")
    return out.getvalue()


def slow(view: WssView) -> str:
    """json.dumps(document(), indent=1): the generic View's JSON."""
    out = io.StringIO()
    View.write_to(view, out, "json", "human")
    assert out.getvalue() == json.dumps(view.document(), indent=1) + "\n"
    return out.getvalue()


def same_text(got: str, want: str) -> None:
    if got != want:  # the first difference, not megabytes of diff
        i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        pytest.fail(f"differs at {i}: {got[i - 80:i + 80]!r} != {want[i - 80:i + 80]!r}")


def same(view: WssView) -> str:
    """The fast writer's text, checked to be json.dumps'."""
    got = fast(view)
    same_text(got, slow(view))
    return got


HOSTILE = ['"quoted" name', "back\\slash\\", 'both \\" and "\\', "ctl \x00\x01\x07\x1f\x7f end",
           "newline\nand\ttab\rand\x0b\x0c", "non-utf8 \udcff\udc80\udcc3", "é ü 中文 \u2028\u2029 \U0001f600",
           "x" * 20_000, " (deleted)", "", "[anon:a\"b]", "</script><script>", "%d %s %%"]


def hostile_result(counted: bool, n: int) -> WssResult:
    rows, starts = [], []
    for i in range(n):
        start = 0x7f0000000000 + i * 0x10000
        perms = ["r--p", "rw-p", "---s", 'r"\\p'][i % 4]
        path = HOSTILE[i % len(HOSTILE)]
        res = (i * 7) % 50
        loc = min(res, i % 5)
        rows.append(VmaWss(Vma(start, start + 0x10000, perms, 0, "00:00", 0, path), res, loc,
                           ((i * 3) % 50) if counted else None))
        starts.append(start)
    first = np.array([s // 4096 + k for s in starts[::3] for k in (0, 2, 5)], dtype=np.int64)
    runs = (first, (np.arange(len(first), dtype=np.int64) % 3) + 1)
    ages = Ages()
    vpn = np.arange(300, dtype=np.uint64)
    ages.update(vpn, vpn % 3 == 0)
    ages.update(vpn, vpn % 5 == 0)
    return WssResult(4242, HOSTILE[0] + HOSTILE[5], "clear_refs" if counted else "idle", 0.1, rows,
                     [totals(rows)] * 2, ages.histogram(), runs, intervals=[0.1, 0.30000000000000004])


@pytest.mark.parametrize("counted", [True, False])
@pytest.mark.parametrize("chunk", [1, 3, 8192])
def test_hostile_strings(counted, chunk, monkeypatch):
    """Quotes, backslashes, control characters, surrogate-escaped bytes, non-ASCII, a 20,000
    character name, a '%' in a name; runs in some VMAs, none in others; rows in pieces of 1, 3 and
    the default size."""
    monkeypatch.setattr(render_wss, "_CHUNK", chunk)
    res = hostile_result(counted, 40)
    for view in (WssView.build(res, all_vmas=True), WssView.build(res), WssView.build(res, sort="accessed", limit=7)):
        same(view)
    assert '"located_runs": [\n    [\n' in fast(WssView.build(res, all_vmas=True))  # the runs were written


def test_no_rows_and_no_ages():
    """No VMA shown (an empty list, as json.dumps writes it), no cycle, no age."""
    res = WssResult(1, "x", "idle", 1.0, [], [], [], (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    same(WssView.build(res, all_vmas=True))
    res = hostile_result(True, 5)
    res.ages = []
    same(WssView.build(res, limit=1))


@pytest.mark.parametrize("chunk", [1, 3, 8192])
def test_csv_and_text_are_the_generic_writers(chunk, monkeypatch):
    """CSV (written by _csv_rows) is csv.writer's bytes of table(), hostile paths and perms
    included (quotes, commas in none, line breaks, '%'); text is the generic View's."""
    monkeypatch.setattr(render_wss, "_CHUNK", chunk)
    res = hostile_result(True, 40)
    res.rows[1].vma = res.rows[1].vma._replace(path="a,b")
    for view in (WssView.build(res, all_vmas=True), WssView.build(res, sort="accessed", limit=7)):
        for fmt in ("csv", "text"):
            a, b = io.StringIO(), io.StringIO()
            view.write_to(a, fmt, "human")
            View.write_to(view, b, fmt, "human")
            same_text(a.getvalue(), b.getvalue())
    out = io.StringIO()
    WssView.build(res, all_vmas=True).write_to(out, "csv", "human")
    assert '"a,b"' in out.getvalue() and '"newline\nand' in out.getvalue()  # quoted where csv quotes


# A child of many VMAs (an anon region with every other page made read-only: +2 VMAs each) and a
# file with a hostile name mapped, whose pages it writes when told to (located runs).
CHILD = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
n = int(sys.argv[1])
m = mmap.mmap(-1, (2 * n + 2) * 4096)
m.write(b"x" * len(m))
a = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(n):
    assert libc.mprotect(a + (2 * i + 1) * 4096, 4096, 1) == 0
fd = os.open(os.fsencode(sys.argv[2]), os.O_RDWR | os.O_CREAT, 0o600)
os.ftruncate(fd, 64 * 4096)
f = mmap.mmap(fd, 64 * 4096)
print("ready", flush=True)
for line in sys.stdin:
    f[4096 * 3: 4096 * 9] = b"y" * (6 * 4096)
    f[4096 * 20: 4096 * 21] = b"y" * 4096
    m[4096 * 2 * (n // 2)] = 1
    print("done", flush=True)
"""


@needs_root
def test_real_scan_of_many_vmas(tmp_path, monkeypatch, run):
    """A real clear_refs scan of ~20,000 VMAs (pieces of rows: 3), with a mapped file named with a
    quote, a backslash, a control character and a byte that is not UTF-8, written during the
    interval (located runs): the same bytes as json.dumps(indent=1), and the CLI's output is that
    document again."""
    name = os.fsdecode(b'wss "q" \\ \x01 \xff\xfe ' + "é".encode() + b" " + b"n" * 200)
    path = tmp_path / name
    p = subprocess.Popen([sys.executable, "-c", CHILD, "10000", str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline() == "ready\n"
        clear = wss.clear_refs

        def clear_then_write(*args, **kw):
            clear(*args, **kw)
            p.stdin.write("go\n")
            p.stdin.flush()
            assert p.stdout.readline() == "done\n"

        monkeypatch.setattr(wss, "clear_refs", clear_then_write)
        res = measure(p.pid, "clear_refs", 0.01, 1)
        view = WssView.build(res, all_vmas=True)
        assert len(view.rows) > 20_000
        doc = json.loads(same(view))
        mine = [v for v in doc["vmas"] if v["path"] == str(path)]
        assert mine and mine[0]["located_runs"], "the file's written pages are located"
        monkeypatch.setattr(render_wss, "_CHUNK", 3)
        same(WssView.build(res))
        same(WssView.build(res, sort="resident", limit=5000))
        monkeypatch.setattr(render_wss, "_CHUNK", 8192)
        r = run("wss", str(p.pid), "--interval", "0.01", "--method", "clear_refs", "--format", "json", "--all")
        assert r.code == 0, r.err
        again = json.loads(r.out)
        assert len(again["vmas"]) > 20_000 and any(v["path"] == str(path) for v in again["vmas"])
        same_text(r.out, json.dumps(again, indent=1) + "\n")
    finally:
        p.kill()
        p.wait()
