"""Hostile conditions: one clear line on stderr, a documented exit code, never a traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import pmaps_cmd
from memchild import MemChild

import pmaps
from pmaps.collector import Options, Process


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pmaps: ")
    return lines[0]


def _free_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_no_such_pid():
    r = pmaps_cmd(str(_free_pid()), check=False)
    assert r.returncode == 3 and "no such process" in _one_line(r.stderr)


@pytest.mark.parametrize("arg", ["abc", "-5x", "0", "12.5"])
def test_not_a_pid(arg):
    r = pmaps_cmd("--", arg, check=False) if arg.startswith("-") else pmaps_cmd(arg, check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr


def test_kernel_thread():
    r = pmaps_cmd("2", check=False)  # kthreadd
    assert r.returncode == 5 and "kernel thread" in _one_line(r.stderr)


@pytest.mark.parametrize("argv", [["wss", "{}", "--interval", "0.01"], ["watch", "{}", "--count", "1"],
                                  ["explain", "{}"], ["diff", "{}", "--wait", "0"], ["--summary", "{}"]],
                         ids=lambda a: a[0])
def test_commands_say_only_the_error(argv):
    """A bad target is the one line, before any note (wss' choice of method is said only once the
    process was read)."""
    for pid, code, msg in ((_free_pid(), 3, "no such process"), (2, 5, "kernel thread")):
        r = pmaps_cmd(*[str(pid) if a == "{}" else a for a in argv], check=False)
        assert r.returncode == code and msg in _one_line(r.stderr), (argv, r.stderr)


def test_zombie():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    try:
        r = pmaps_cmd(str(p.pid), check=False)
        assert r.returncode == 5 and "zombie" in _one_line(r.stderr)
    finally:
        p.wait()


def test_exits_mid_scan():
    """The process dies between opening it and reading its pages."""
    with MemChild(["a:anon:1M"]) as mc:
        proc = Process(mc.pid, Options())
        os.kill(mc.pid, signal.SIGKILL)
        mc.proc.wait()
        with pytest.raises(pmaps.ProcessGone, match="exited during the scan"):
            list(proc.chunks())
        proc.close()


def test_several_pids_one_failing():
    with MemChild(["a:anon:64K"]) as mc:
        r = pmaps_cmd(str(mc.pid), str(_free_pid()), check=False)
    assert r.returncode == 7
    assert f"# {mc.pid} " in r.stdout
    assert "no such process" in r.stderr and "Traceback" not in r.stderr


def test_forced_scan_on_kernel_without_it_is_clear(monkeypatch):
    """A kernel without PAGEMAP_SCAN answers ENOTTY: forced scan says so; auto falls back."""
    import errno

    from pmaps.kernel import pagemap_scan as scan

    def no_ioctl(*a, **k):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(scan.fcntl, "ioctl", no_ioctl)
    with MemChild(["a:anon:64K"]) as mc:
        snap = pmaps.collect(mc.pid)  # falls back by itself
        assert not snap.known.categories and len(snap.pages) > 0
        with pytest.raises(pmaps.Unsupported, match="PAGEMAP_SCAN"):
            pmaps.collect(mc.pid, scan=True)


def test_corrupt_snapshot_files(tmp_path):
    for name, data in [("garbage", b"not a snapshot"), ("empty", b""), ("zip", b"PK\x03\x04" + b"\0" * 40)]:
        p = tmp_path / name
        p.write_bytes(data)
        r = pmaps_cmd(str(p), check=False)
        assert r.returncode == 6 and "snapshot" in _one_line(r.stderr), name


def test_broken_pipe_is_quiet():
    with MemChild(["a:anon:4M:every=2"]) as mc:
        p = subprocess.run(f"{sys.executable} -m pmaps {mc.pid} | head -1", shell=True, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(__import__('helpers').ROOT / 'src')})
    assert p.stdout.count("\n") == 1 and "Traceback" not in p.stderr and "Broken" not in p.stderr
