"""pmaps watch: the plain-text frame (golden and live), and the rich view headless in tmux."""
from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import ROOT
from memchild import MemChild
from pmaps.analysis.diff import diff_samples
from pmaps.render.live import WatchView, write_plain
from pmaps.store.recording import load_sample

GOLDEN = Path(__file__).parent / "golden"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags of a live child)")


def test_golden_plain():
    a, b = load_sample(GOLDEN / "time_a.parquet"), load_sample(GOLDEN / "time_b.parquet")
    view = WatchView.build(b, a, diff_samples(a, b), cost_ms=12.5, cpu_pct=1.3, interval=1.0, fields="full",
                           status=["a sample took 1200 ms, longer than the interval: slowed down to every 1.8s"])
    out = io.StringIO()
    write_plain(out, view)
    path = GOLDEN / "watch.txt"
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(out.getvalue())
    assert out.getvalue() == path.read_text(), "watch.txt differs; PMAPS_BLESS=1 to accept"


def many_vmas_sample(n: int, skip: set[int], odd_perms: dict[int, str]):
    """A sample of n one-page VMAs (perms varied, some of them `odd_perms`), each page resident
    except in the VMAs of `skip` (no ranges: not shown)."""
    import dataclasses

    import numpy as np

    from pmaps.kernel.maps import Vma

    a = load_sample(GOLDEN / "time_a.parquet")
    perms = ["rw-p", "r--p", "r-xp", "---p"]
    vmas = [Vma((1 << 30) + i * 8192, (1 << 30) + i * 8192 + 4096, odd_perms.get(i, perms[i % 7 % 4]), 0, "00:00",
                0, "/lib/x.so" if i % 500 == 3 else "") for i in range(n)]
    keep = np.array([i for i in range(n) if i not in skip], dtype=np.int32)
    return dataclasses.replace(a, table=vmas, vma=keep, vpn=np.array([vmas[i].start >> 12 for i in keep], np.uint64),
                               count=np.ones(len(keep), np.int64), state=np.full(len(keep), a.state[0], np.uint64),
                               mapcount=np.ones(len(keep), np.int64))


def test_plain_frame_of_many_vmas():
    """A frame of thousands of VMAs (rows copied as runs, perms as the table's kinds): one line
    per VMA with pages, in address order, its address and perms; the perms of a VMA not shown
    does not widen the column; the rows of a view match its columns."""
    n = 3000
    skip = {0, 1, 700, 701, 702, 2999}
    s = many_vmas_sample(n, skip, {5: "rwxs", 700: "r--p-very-long"})
    view = WatchView.build(s, None, None, cost_ms=1.0, cpu_pct=1.0, interval=1.0, fields="full")
    out = io.StringIO()
    write_plain(out, view)
    lines = out.getvalue().splitlines()
    body = [ln for ln in lines if ln[:1].isdigit() or ln[:1] in "abcdef"]
    shown = [i for i in range(n) if i not in skip]
    assert len(body) == len(view) == len(shown)
    for ln, i, r in zip(body, shown, view.rows):
        v = s.vmas[i]
        assert ln.split()[:2] == [f"{v.start:x}-{v.end:x}", v.perms] == [f"{r.start:x}-{r.end:x}", r.perms]
        assert ln.rstrip().endswith("/lib/x.so") == (v.path == "/lib/x.so")
    assert lines[1].index("RSS") - lines[1].index("PERMS") < len("r--p-very-long")  # not shown: not counted
    assert view.cols.perms == [s.vmas[i].perms for i in shown]


def test_pick_rows_as_runs():
    import numpy as np

    from pmaps.render.live import _pick

    items = [str(i) for i in range(5000)]
    for idx in (np.arange(5000), np.delete(np.arange(5000), [0, 9, 10, 4999]), np.arange(0, 5000, 2),
                np.arange(4999, -1, -1), np.arange(0), np.array([7]), np.arange(100, 300)):
        assert _pick(items, idx) == [items[i] for i in idx.tolist()]


@needs_root
def test_plain_frames_and_deltas(run):
    with MemChild(["a:anon:256K"]) as mc:
        r = run("watch", str(mc.pid), "--once")
        assert r.code == 0, r.err
        line = [ln for ln in r.out.splitlines() if ln.startswith(f"{mc.regions['a']['start']:x}-")]
        assert line and line[0].split()[2] == "256K"
        assert "ms/sample" in r.out and "% of a core" in r.out
        r = run("watch", str(mc.pid), "--count", "1", "--fields", "pagemap")
        assert r.code == 0 and "fields pagemap" in r.out


@needs_root
def test_pagemap_fields_cheaper(run):
    from pmaps.collector import Options, Process, take_sample

    with MemChild(["a:anon:64M"]) as mc:
        cost = {}
        for f in ("full", "pagemap"):
            with Process(mc.pid, Options.fields(f)) as proc:
                cost[f] = min(take_sample(proc).cost for _ in range(3))
    assert cost["pagemap"] < cost["full"]


@pytest.fixture
def tmux():
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    sock = f"pmaps-test-{uuid.uuid4().hex[:8]}"
    yield ["tmux", "-L", sock]
    subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def _screen(tmux, until: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True).stdout
        if until in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{until!r} never appeared on screen:\n{text}")


@needs_root
def test_live_view_in_tmux(tmux):
    with MemChild(["a:anon:256K", "b:anon:512K:skip=0-128"]) as mc:
        # COLUMNS/LINES: a detached tmux pane may report 80x24 whatever -x/-y say.
        cmd = (f"COLUMNS=200 LINES=50 PYTHONPATH={shlex.quote(str(ROOT / 'src'))} {shlex.quote(sys.executable)} "
               f"-m pmaps watch {mc.pid} --interval 0.3 --sort change; echo WATCH-EXIT=$?; sleep 30")
        subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "200", "-y", "50", cmd], check=True)
        screen = _screen(tmux, "q quit")
        assert f"pmaps watch {mc.pid}" in screen and "ms/sample" in screen and "sort change" in screen
        mc.cmd("touch b 0 16")  # 64K becomes present: sorted by change, b's row comes first with +64K
        screen = _screen(tmux, "+64K")
        row = [ln for ln in screen.splitlines() if ln.startswith(f"{mc.regions['b']['start']:x}-")]
        assert row and "+64K" in row[0]
        subprocess.run([*tmux, "send-keys", "-t", "w", "s"], check=True)
        screen = _screen(tmux, "sort address")
        assert f"{mc.regions['a']['start']:x}-" in screen
        subprocess.run([*tmux, "send-keys", "-t", "w", "p"], check=True)
        _screen(tmux, "paused")
        subprocess.run([*tmux, "send-keys", "-t", "w", "q"], check=True)
        screen = _screen(tmux, "WATCH-EXIT=0")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")
def test_watch_cpu_budget_says_so(run):
    with MemChild(["a:anon:16M"]) as mc:
        r = run("watch", str(mc.pid), "--once", "--max-cpu", "0.1")
        assert r.code == 0, r.err
        assert "! CPU budget 0.1% of a core: every" in r.out


@needs_root
@pytest.mark.parametrize("argv", [["watch", "--interval", "0.2"], ["top", "--watch", "0.2", "-p"]])
def test_sigterm_exits_130_ctrl_c_0(argv):
    """Ctrl-C ends a watch as q does (exit 0); SIGTERM is someone else stopping it: 130, as every
    command exits when interrupted. Either way the frames written so far are kept, no traceback."""
    import signal

    with MemChild(["a:anon:256K"]) as mc:
        for sig, code in ((signal.SIGTERM, 130), (signal.SIGINT, 0)):
            p = subprocess.Popen([sys.executable, "-m", "pmaps", *argv, str(mc.pid)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT)
            try:
                first = p.stdout.readline()  # type: ignore[union-attr]
                assert first, p.stderr.read()  # type: ignore[union-attr]
                time.sleep(0.3)  # a frame or two more: the signal lands mid-run, not at start-up
                p.send_signal(sig)
                out, err = p.communicate(timeout=30)
            finally:
                p.kill()
            assert p.returncode == code, (sig, p.returncode, err)
            assert "Traceback" not in err, err
