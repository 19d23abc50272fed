"""Regressions from attacking every command: bad input and hostile conditions give one clear line
on stderr and a documented exit code, never a traceback, a hang or a half-written file."""
from __future__ import annotations

import base64
import json
import os
import pty
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import termios
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers import NOBODY, ROOT
from pmaps.errors import ProcessGone, ZombieProcess
from pmaps.kernel import procfs

PMAPS = [sys.executable, "-m", "pmaps"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pmaps"), err
    return lines[0]


def _sleeping(pid: int, comm: str = "sleep") -> bool:
    """`pid` has exec'd `comm` and is asleep in it (past the dynamic loader): a quiet process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return name == comm and rest.split()[0] == "S"


@pytest.fixture(scope="module")
def sleeper(wait_for):
    """A quiet process of our own (sleep), killed and reaped at the end."""
    p = subprocess.Popen(["sleep", "300"])
    wait_for(lambda: _sleeping(p.pid), "sleep to be asleep")
    yield p.pid
    p.kill()
    p.wait()


def _spin_child() -> subprocess.Popen:
    """A python child that keeps touching memory until killed (ready once it printed)."""
    code = "import time\nb=bytearray(8<<20)\nprint('ready',flush=True)\nwhile True:\n b[::4096]=b'x'*2048; time.sleep(0.02)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    return p


# -- usage: one line, exit 2, before any work -------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["save"],
    ["top", "--sort", "nope"],
    ["watch", "--interval", "nan", "1"],
    ["watch", "--count", "0", "1"],
    ["record", "--interval", "inf", "-o", "x", "1"],
    ["record", "--duration", "-1", "-o", "x", "1"],
    ["wss", "--interval", "nan", "1"],
    ["wss", "--cycles", "0", "1"],
    ["top", "--watch", "nan"],
    ["top", "-n", "-1"],
    ["diff", "--wait", "nan", "1"],
    ["heatmap", "d", "-o", "x.png", "--width", "0"],
], ids=" ".join)
def test_argparse_errors_are_one_line(run, argv):
    r = run(*argv)
    assert r.code == 2
    one_line(r.err)


@pytest.mark.parametrize("argv,msg", [
    (["top", "-c", "["], "not a regular expression"),
    (["libs", "--path", "("], "not a regular expression"),
    (["top", "-p", "-5"], "not a list of PIDs"),
    (["top", "-p", "0,1"], "not a list of PIDs"),
    (["phys", "--pfn", "99999999999999999999999-99999999999999999999999999"], "bad PFN range"),
    (["phys", "-b", "0x1ffffffffffffffffff"], "out of range"),
    (["top", "--pie", "chart.svg"], "must end in .png"),
    (["save", "-o", "", "1"], "-o needs"),
    (["record", "-o", "", "1"], "-o needs"),
    (["show", "nothere.npz"], "nor an existing snapshot file"),
    (["top", "-u", "no-such-user-xyz"], "-u: no such user 'no-such-user-xyz'"),
    (["libs", "-u", "root,no-such-user-xyz"], "-u: no such user 'no-such-user-xyz'"),
    (["top", "--cgroup", "/no-such-cgroup-xyz"], "--cgroup: no memory cgroup '/no-such-cgroup-xyz'"),
    (["cgroups", "--cgroup", "/no-such-cgroup-xyz"], "--cgroup: no memory cgroup '/no-such-cgroup-xyz'"),
    (["explain", "--cgroup", "/no-such-cgroup-xyz"], "--cgroup: no memory cgroup '/no-such-cgroup-xyz'"),
    (["explain", "1", "--system"], "give one of a PID, --cgroup PATH or --system"),
    (["record", "1", "-o", "x", "--batch", "5"], "--batch goes with --dataset"),
    (["explain", "--cgroup", "/", "--system"], "give one of a PID, --cgroup PATH or --system"),
    (["diff", "nothere.parquet"], "nor an existing sample file"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_usage_errors(run, argv, msg):
    r = run(*argv)
    assert r.code == 2 and msg in one_line(r.err)


def test_directory_where_a_snapshot_is_expected(run, tmp_path):
    r = run(str(tmp_path))
    assert r.code == 2 and "is a directory" in one_line(r.err)


# -- corrupt snapshots (.npz) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def snapshot(sleeper, tmp_path_factory):
    import io

    from pmaps.cli import main

    path = tmp_path_factory.mktemp("snap") / "good.npz"

    assert main(["save", str(sleeper), "-o", str(path)], io.StringIO(), io.StringIO()) == 0
    return path


def _rewrite_npz(src: Path, dst: Path, meta=None, **cols) -> Path:
    z = dict(np.load(src))
    m = json.loads(bytes(z["meta"]))
    if meta:
        meta(m)
    z["meta"] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    z.update(cols)
    np.savez(dst, **z)
    return dst


def _set(key, value):
    return lambda m: m.__setitem__(key, value)


@pytest.mark.parametrize("name,meta,cols", [
    ("known_list", _set("known", [1]), {}),
    ("vma_huge", lambda m: m["vmas"][0].__setitem__(0, 10 ** 300), {}),
    ("vma_negative", lambda m: m["vmas"][0].__setitem__(0, -4096), {}),
    ("vmas_reversed", lambda m: m["vmas"].reverse(), {}),
    ("vmas_overlap", lambda m: m["vmas"][1].__setitem__(0, m["vmas"][0][0]), {}),
    ("float_column", None, {"pm": np.full(4, 0.5)}),
])
def test_corrupt_snapshot(run, snapshot, tmp_path, name, meta, cols):
    if cols:  # keep the column lengths consistent: only the dtype is wrong
        n = len(np.load(snapshot)["vpn"])
        cols = {k: np.resize(v, n) for k, v in cols.items()}
    bad = _rewrite_npz(snapshot, tmp_path / f"{name}.npz", meta, **cols)
    for extra in ([], ["--summary"], ["--format", "json"]):
        r = run(*extra, str(bad))
        assert r.code == 6, (name, r.err)
        assert "corrupt snapshot" in one_line(r.err)
        assert "ranges" not in r.out


def test_lone_surrogate_in_a_snapshot_name(snapshot, tmp_path):
    """A crafted snapshot whose comm and path hold a lone surrogate (a JSON "\\ud8ff": no real name
    decodes to one) is shown with it escaped, in every format, through a real stdout. Before, the
    encoder's error was taken for a closed stdout: exit 1, and nothing written."""
    from helpers import pmaps_cmd

    def hostile(m):
        m["comm"] = "c\ud8ffd"
        m["vmas"][0][-1] = "/x\udc41\ud9ff"

    bad = _rewrite_npz(snapshot, tmp_path / "surrogate.npz", hostile)
    for fmt in ("text", "csv", "json", "ndjson"):
        r = pmaps_cmd("--format", fmt, str(bad), "-q", check=False)
        assert r.returncode == 0, (fmt, r.stderr)
        assert "closed" not in r.stderr and len(r.stdout) > 200, fmt
        if fmt in ("text", "csv"):
            assert "\\ud9ff" in r.stdout and "\ud9ff" not in r.stdout, fmt
    r = pmaps_cmd("--format", "text", "--summary", str(bad), check=False)
    assert r.returncode == 0 and "\\udc41\\ud9ff" in r.stdout
    r = pmaps_cmd("diff", str(bad), str(snapshot), check=False)
    assert r.returncode == 0 and "c\\ud8ffd" in r.stdout


def test_snapshot_deflate_bomb_is_refused_before_it_inflates(snapshot, tmp_path):
    """Members of zeros deflate ~1000:1, under the zip ratio check: a 7 MB crafted file of seven
    such members took 12.8 GB before "pages are not in address order". The page numbers must rise,
    so they cannot deflate that well: that column is checked first, before anything is inflated;
    the run is held to 600 MB of address space (a small snapshot needs less)."""
    import resource
    import zipfile


    n = 1 << 25  # 256 MiB a member
    z = dict(np.load(snapshot))
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=1) as out:
        for name, dtype in (("meta", None), ("vpn", "<u8"), ("pm", "<u8"), ("cat", "<u2")):
            with out.open(name + ".npy", "w", force_zip64=True) as f:
                if dtype is None:
                    np.lib.format.write_array(f, z["meta"], allow_pickle=False)
                    continue
                np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": (n,)})
                zero = bytes(16 << 20)
                left = n * np.dtype(dtype).itemsize
                while left > 0:
                    f.write(zero[:left])
                    left -= len(zero)
    assert bomb.stat().st_size < 4 << 20

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))

    r = subprocess.run([sys.executable, "-m", "pmaps", str(bomb)], capture_output=True, text=True, preexec_fn=cap,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert r.returncode == 6 and "deflates more than an increasing column can" in one_line(r.stderr), r.stderr


# -- corrupt samples and recordings (.parquet) ----------------------------------------------
@pytest.fixture(scope="module")
def recording(sleeper, tmp_path_factory):
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    import io

    from pmaps.cli import main

    path = tmp_path_factory.mktemp("rec") / "rec"
    assert main(["record", str(sleeper), "-o", str(path), "--count", "2", "--interval", "0.05", "-q"],
                io.StringIO(), io.StringIO()) == 0
    return path


def _rewrite_sample(src: Path, dst: Path, meta=None, column=None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(src)
    m = json.loads(zlib.decompress(base64.b64decode(t.schema.metadata[b"pmaps"])))
    if meta:
        meta(m)
    if column:
        name, values, typ = column
        t = t.set_column(t.column_names.index(name), name, pa.array(values(len(t)), typ))
    t = t.replace_schema_metadata({b"pmaps": base64.b64encode(zlib.compress(json.dumps(m).encode()))})
    pq.write_table(t, dst)
    return dst


def test_corrupt_samples(run, recording, tmp_path):
    import pyarrow as pa

    good = recording / "sample-000000.parquet"
    cases = {
        "known_list": {"meta": _set("known", [1])},
        "vma_huge": {"meta": lambda m: m["vmas"][0].__setitem__(0, 2 ** 70)},
        "vma_negative": {"meta": lambda m: m["vmas"][0].__setitem__(0, -1)},
        "null_state": {"column": ("state", lambda n: [None] * n, pa.uint64())},
        "zero_count": {"column": ("count", lambda n: [0] * n, pa.uint32())},
        "string_addr": {"column": ("addr", lambda n: ["x"] * n, pa.string())},
    }
    for name, kw in cases.items():
        bad = _rewrite_sample(good, tmp_path / f"{name}.parquet", **kw)
        r = run("diff", str(bad), str(good))
        assert r.code == 6, (name, r.err)
        assert "corrupt pmaps sample" in one_line(r.err), name


def test_lone_surrogate_in_a_recording(run, recording, tmp_path):
    """A sample whose comm holds lone surrogates: diff shows it escaped, heatmap draws its title
    with it escaped (matplotlib refused the text: a traceback)."""
    pytest.importorskip("matplotlib")
    from helpers import pmaps_cmd

    rec = tmp_path / "rec"
    rec.mkdir()
    for f in sorted(recording.iterdir()):
        if f.name.startswith("sample-"):
            _rewrite_sample(f, rec / f.name, _set("comm", "a\udc41b\ud9ffc"))
        else:
            (rec / f.name).write_bytes(f.read_bytes())
    a, b = sorted(rec.glob("sample-*.parquet"))[:2]
    r = pmaps_cmd("diff", str(a), str(b), check=False)
    assert r.returncode == 0 and "a\\udc41b\\ud9ffc" in r.stdout, r.stderr
    for ext in ("png", "svg", "html"):
        r = run("heatmap", str(rec), "-o", str(tmp_path / f"h.{ext}"))
        assert r.code == 0 and (tmp_path / f"h.{ext}").stat().st_size > 0, (ext, r.err)


def test_heatmap_survives_a_damaged_manifest(run, recording, tmp_path):
    pytest.importorskip("matplotlib", reason="heatmap needs the plot extra")
    rec = tmp_path / "rec"
    shutil.copytree(recording, rec)
    (rec / "manifest.json").write_text('{"interval": "x"}')  # advisory only: samples are self-describing
    r = run("heatmap", str(rec), "-o", str(tmp_path / "h.png"))
    assert r.code == 0, r.err
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_heatmap_unwritable_outputs(run, recording, tmp_path):
    pytest.importorskip("matplotlib", reason="heatmap needs the plot extra")
    (tmp_path / "adir.png").mkdir()
    for out in ("/nonexistent/x.png", str(tmp_path / "adir.png"), str(tmp_path / "nodir" / "x.html")):
        r = run("heatmap", str(recording), "-o", out)
        assert r.code == 1 and "cannot write" in one_line(r.err), out
    assert [p.name for p in tmp_path.iterdir()] == ["adir.png"]  # no temp file left behind


def test_chart_unwritable_output(run, sleeper, tmp_path):
    pytest.importorskip("matplotlib", reason="charts need the plot extra")
    r = run("top", "-p", str(sleeper), "--pie", "/nonexistent/x.png")
    assert r.code == 1 and "cannot write /nonexistent/x.png" in one_line(r.err)


def test_outputs_refused_before_the_work(run, sleeper, tmp_path):
    """An output that the write would refuse (it exists, no --force; both charts to one file) is
    refused before the scan: nothing on stdout, the file untouched."""
    old = tmp_path / "old.png"
    old.write_bytes(b"mine")
    pid = str(sleeper)
    for argv, code, msg in ((["top", "-p", pid, "--pie", str(old)], 2, "exists: use --force"),
                            (["libs", "-p", pid, "--bar", str(old)], 2, "exists: use --force"),
                            (["explain", pid, "--chart", str(old)], 2, "exists: use --force"),
                            (["save", pid, "-o", str(old)], 2, "exists: use --force"),
                            (["top", "-p", pid, "--pie", str(tmp_path / "n.png"), "--bar", str(tmp_path / "n.png")],
                             2, "give two file names"),
                            (["explain", pid, "--chart", "/nonexistent/x.png"], 1, "cannot write /nonexistent/x.png")):
        r = run(*argv)
        assert r.code == code and msg in one_line(r.err) and r.out == "", (argv, r.err, r.out[:200])
    assert old.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]


def test_chart_as_a_user_whose_home_is_not_writable(sleeper, wait_for):
    """matplotlib's multi-line warnings about its config directory stay off pmaps' stderr."""
    pytest.importorskip("matplotlib", reason="charts need the plot extra")
    d = tempfile.mkdtemp(prefix="pmaps-hostile-")
    try:
        os.chmod(d, 0o777)
        env = {k: v for k, v in ENV.items() if k != "MPLCONFIGDIR"}
        env["HOME"] = "/root"  # as under setpriv or sudo without -H: not writable by nobody
        own = subprocess.Popen([*NOBODY, "sleep", "30"])
        try:
            wait_for(lambda: _sleeping(own.pid), "setpriv to exec sleep as nobody")
            r = subprocess.run([*NOBODY, *PMAPS, "top", "-q", "-p", str(own.pid), "--pie", f"{d}/p.png"],
                               capture_output=True, text=True, env=env, timeout=60, check=False)
        finally:
            own.kill()
            own.wait()
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", r.stderr
        assert Path(d, "p.png").stat().st_size > 0
    finally:
        shutil.rmtree(d)


# -- record: the output directory ----------------------------------------------------------
def test_record_refuses_a_directory_in_use(run, sleeper, tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    os.chmod(d, 0o755)
    r = run("record", str(sleeper), "-o", str(d), "--count", "1")
    assert r.code == 2 and "not empty" in one_line(r.err)
    assert stat.S_IMODE(d.stat().st_mode) == 0o755 and sorted(p.name for p in d.iterdir()) == ["notes.txt"]


def test_record_into_a_file(run, sleeper, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = run("record", str(sleeper), "-o", str(f), "--count", "1")
    assert r.code == 1 and "not a directory" in one_line(r.err)


def test_record_into_an_empty_directory(run, sleeper, tmp_path):
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    d = tmp_path / "empty"
    d.mkdir()
    r = run("record", str(sleeper), "-o", str(d), "--count", "1", "-q")
    assert r.code == 0, r.err
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "sample-000000.parquet").stat().st_mode) == 0o600


def test_record_with_stderr_gone_keeps_recording(sleeper, tmp_path):
    """`pmaps record ... 2>&1 | head -1`: the notes are lost, the recording is not."""
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    d = tmp_path / "r"
    p = subprocess.Popen([*PMAPS, "record", str(sleeper), "-o", str(d), "--interval", "0.02", "--count", "20"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    assert p.stderr is not None
    p.stderr.readline()
    p.stderr.close()
    assert p.wait(timeout=60) == 0
    m = json.loads((d / "manifest.json").read_text())
    assert m["end"]["reason"] == "count" and len(m["samples"]) == 20
    r = subprocess.run([*PMAPS, "record", str(sleeper), "-o", str(tmp_path / "r2"), "--interval", "0.02",
                        "--count", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                       pass_fds=(), timeout=60, preexec_fn=lambda: os.close(2))
    assert r.returncode == 0
    assert len(json.loads((tmp_path / "r2" / "manifest.json").read_text())["samples"]) == 5


# -- processes that change state under us ---------------------------------------------------
def test_zombie_after_the_scan_began_is_gone_not_unsupported():
    p = subprocess.Popen(["sleep", "30"])
    try:
        p.kill()
        deadline = time.time() + 5
        while procfs.process_state(p.pid) != "Z" and time.time() < deadline:
            time.sleep(0.01)
        assert isinstance(procfs.gone_error(p.pid, "x", started=True), ProcessGone)
        assert isinstance(procfs.gone_error(p.pid, "x", started=False), ZombieProcess)
    finally:
        p.wait()


def test_wss_target_exits_keeps_completed_cycles(run, monkeypatch, wait_for):
    """The target exits in cycle 2: killed when wss re-reads its maps at the end of that cycle's
    interval (the event, not a guessed time), so exactly one cycle completed."""
    import pmaps.analysis.wss as wss

    p = _spin_child()
    table_once = wss.table_once
    calls = []

    def read_then_exit(proc):
        calls.append(proc.pid)
        if len(calls) == 2:  # the end of cycle 2's interval
            p.kill()
            wait_for(lambda: procfs.process_state(p.pid) in (None, "Z", "X"), "the target to exit")
        return table_once(proc)

    monkeypatch.setattr(wss, "table_once", read_then_exit)
    try:
        r = run("wss", str(p.pid), "--interval", "0.05", "--cycles", "20", "--format", "json", "--method", "clear_refs")
    finally:
        p.kill()
        p.wait()
    assert calls == [p.pid, p.pid]
    assert r.code == 3
    assert "exited during the scan: results of the completed cycles follow" in one_line(r.err)
    doc = json.loads(r.out)
    assert len(doc["cycles"]) == 1


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.time() + timeout
    while needle not in buf and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                buf += os.read(fd, 65536)
            except OSError:
                break
    return buf


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_live_watch_restores_the_terminal(sleeper, sig):
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ["PYTHONPATH"] = str(ROOT / "src")
        os.execv(sys.executable, [*PMAPS, "watch", "--interval", "0.2", str(sleeper)])
    try:
        out = _read_until(fd, b"q quit", 20)
        assert b"q quit" in out, out[-500:]
        assert not termios.tcgetattr(fd)[3] & termios.ECHO  # cbreak, no echo while live
        os.kill(pid, sig)
        out += _read_until(fd, b"\x00never", 3)
        _, status = os.waitpid(pid, 0)
        # Ctrl-C ends a watch as q does: 0; SIGTERM is someone else stopping it: 130 (cli.entry)
        assert os.waitstatus_to_exitcode(status) == (130 if sig == signal.SIGTERM else 0)
        attrs = termios.tcgetattr(fd)
        assert attrs[3] & termios.ECHO and attrs[3] & termios.ICANON  # restored
        assert b"Traceback" not in out
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def _has_open(pid: int, path: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                return True
        except OSError:
            pass
    return False


def test_sigterm_is_an_interruption(wait_for):
    """`kill` ends pmaps like Ctrl-C: exit 130, one line (files being written are removed)."""
    p = subprocess.Popen(["sleep", "30"])
    try:
        d = subprocess.Popen([*PMAPS, "diff", "--wait", "20", str(p.pid)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            # pmaps is sampling (it holds the target's pagemap open until its second sample, 20 s on)
            wait_for(lambda: d.poll() is not None or _has_open(d.pid, f"/proc/{p.pid}/pagemap"),
                     "pmaps diff to open the target's pagemap")
            d.send_signal(signal.SIGTERM)
            out, err = d.communicate(timeout=30)
        finally:
            if d.poll() is None:
                d.kill()
                d.wait()
    finally:
        p.kill()
        p.wait()
    assert d.returncode == 130 and "interrupted" in one_line(err) and out == ""


@pytest.mark.parametrize("arg", ["\u0663", "+1", " 12", "1_0"])
def test_pid_must_be_ascii_digits(arg):
    from pmaps.commands._common import parse_pid
    from pmaps.errors import UsageError

    with pytest.raises(UsageError):
        parse_pid(arg)


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04" + b"\0" * 30, b"garbage"])
def test_corrupt_system_scan_file(tmp_path, data):
    from pmaps.errors import BadSnapshot
    from pmaps.store.scan import loads

    with pytest.raises(BadSnapshot):
        loads(data)
