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
