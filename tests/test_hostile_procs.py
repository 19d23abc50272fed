"""Hostile ground for processes and streams: a PID that comes to name another process, torn maps
reads, process names that are markup or escape sequences, closed and full standard output,
Ctrl-C while pmaps starts."""
from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, mapping_file_named

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
PMAPS = [sys.executable, "-m", "pmaps"]


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pmaps"), err
    return lines[0]


# -- PID reuse: a PID namespace where we choose the next PID (ns_last_pid) ----------------------
NS_SCRIPT = r'''
import json, os, subprocess, sys, time
PM = [sys.executable, "-m", "pmaps"]
OUT = sys.argv[1]


def spawn_at(pid):
    """A new `sleep` given `pid` (ns_last_pid: the next PID is this plus one)."""
    for _ in range(100):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen(["sleep", "300"])
        if p.pid == pid:
            return p
        p.kill(); p.wait()
    raise SystemExit("could not reuse pid %d" % pid)


def has_open(pid, path):
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def swap(a):
    """Kill a, give its PID to a new sleep."""
    pid = a.pid
    a.kill(); a.wait()
    return spawn_at(pid)


res = {}
# record: sample 0 written, then the target is replaced before sample 1
a = subprocess.Popen(["sleep", "300"])
rec = subprocess.Popen(PM + ["record", str(a.pid), "-o", OUT + "/rec", "--interval", "0.5", "--fields", "pagemap"],
                       stderr=subprocess.PIPE, text=True)
first = rec.stderr.readline()
b = swap(a)
res["record"] = {"pid": a.pid, "b": b.pid, "rc": rec.wait(60), "err": first + rec.stderr.read(),
                 "manifest": json.load(open(OUT + "/rec/manifest.json"))}
b.kill(); b.wait()
# watch (plain frames): the first frame shown, then the target replaced
a = subprocess.Popen(["sleep", "300"])
w = subprocess.Popen(PM + ["watch", str(a.pid), "--interval", "0.5", "--fields", "pagemap", "--count", "30"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
head = w.stdout.readline()
b = swap(a)
out, err = w.communicate(timeout=60)
res["watch"] = {"pid": a.pid, "b": b.pid, "rc": w.returncode, "head": head, "err": err}
b.kill(); b.wait()
# diff PID: the first sample taken (pagemap open), the target replaced before the second
a = subprocess.Popen(["sleep", "300"])
d = subprocess.Popen(PM + ["diff", str(a.pid), "--wait", "1", "--fields", "pagemap"], stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
t = time.monotonic()
while not has_open(d.pid, f"/proc/{a.pid}/pagemap") and time.monotonic() < t + 30:
    time.sleep(0.01)
time.sleep(0.3)  # the first sample done (pagemap opens before it is read), well inside --wait 1
b = swap(a)
out, err = d.communicate(timeout=60)
res["diff"] = {"pid": a.pid, "b": b.pid, "rc": d.returncode, "out": out, "err": err}
b.kill(); b.wait()
print(json.dumps(res))
'''


@pytest.mark.root
def test_pid_reuse_ends_record_watch_and_diff(tmp_path):
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    if os.geteuid() != 0:
        pytest.skip("PID namespaces need root")
    script = tmp_path / "ns.py"
    script.write_text(NS_SCRIPT)
    r = subprocess.run(["unshare", "-pf", "--mount-proc", sys.executable, str(script), str(tmp_path)],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for name in ("record", "watch", "diff"):
        assert res[name]["pid"] == res[name]["b"], name  # the PID was reused
    rec = res["record"]
    assert rec["rc"] == 0 and "Traceback" not in rec["err"]
    m = rec["manifest"]
    assert m["end"]["reason"] == "replaced" and "now belongs to another process" in m["end"]["note"]
    assert len(m["samples"]) == 1  # nothing of the new program stored under the old name
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["manifest.json", "sample-000000.parquet"]
    w = res["watch"]
    assert w["rc"] == 0 and w["head"].startswith(f"pmaps watch {w['pid']} (sleep)")
    assert "watch ended" in one_line(w["err"]) and "now belongs to another process" in w["err"]
    d = res["diff"]
    assert d["rc"] == 3 and d["out"] == "" and "now belongs to another process" in one_line(d["err"])


def test_start_time_decoder():
    from pmaps.kernel.status import decode_start_time

    line = b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10"
    assert decode_start_time(line) == 123456
    with pytest.raises(ValueError):
        decode_start_time(b"42 (x) S 1")


# -- torn maps reads -----------------------------------------------------------------------------
def _sample(vmas, vpn, count):
    from pmaps.kernel.maps import Vma
    from pmaps.model import Known, Sample

    vm = [Vma(a, b, "rw-p", 0, "00:00", 0, "") for a, b in vmas]
    starts = np.array([v.start >> 12 for v in vm])
    vma = (np.searchsorted(starts, np.array(vpn), side="right") - 1).astype(np.int32)
    n = len(vpn)
    return Sample(1, "x", vm, Known(), vma, np.array(vpn, dtype=np.uint64), np.array(count, dtype=np.int64),
                  np.zeros(n, dtype=np.uint64), np.full(n, -1, dtype=np.int64), time=1.0)


def test_a_torn_sample_is_not_stored(tmp_path):
    """A maps read torn by a concurrent munmap/mmap: a range outside the VMA the read listed.
    The recorder refuses it before writing, the loader would refuse it after."""
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    from pmaps.errors import BadSnapshot
    from pmaps.store.recorder import Recorder
    from pmaps.store.recording import check_sample

    good = _sample([(0x10000, 0x20000)], [0x10, 0x14], [2, 3])
    torn = _sample([(0x10000, 0x20000)], [0x10, 0x1e], [2, 8])  # runs past the VMA's end
    check_sample(good)
    with pytest.raises(ValueError, match="outside its VMA"):
        check_sample(torn)
    rec = Recorder(tmp_path / "r", 1, "x", 1.0).open()
    rec.add(good)
    torn.seq = 1
    with pytest.raises(BadSnapshot, match="sample 1 is inconsistent"):
        rec.add(torn)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["manifest.json", "sample-000000.parquet"]


def test_maps_is_read_until_two_reads_agree(monkeypatch):
    from pmaps.collector import process as pmod

    line = "%08x-%08x r--p 00000000 00:00 0 %s\n"
    reads = [(line % (0, 8192, "x") + line % (4096, 12288, "torn")).encode(),  # overlapping: torn
             (line % (0, 4096, "b")).encode(), (line % (0, 8192, "a")).encode(), (line % (0, 8192, "a")).encode()]
    monkeypatch.setattr(pmod.procfs, "read_file", lambda pid, name, started=False: reads.pop(0))
    p = pmod.Process(1)
    assert p.refresh_vmas()[0].path == "a" and not reads


CHURN = textwrap.dedent("""\
    import ctypes, mmap, random
    libc = ctypes.CDLL(None)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    N = 4000
    base = libc.mmap(None, N * 4096, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
    r = random.Random(1)
    for i in range(0, N, 2):  # 2000 VMAs: maps text of many pages, read in several steps
        libc.mprotect(ctypes.c_void_p(base + i * 4096), 4096, 1)
    print('ready', flush=True)
    while True:  # split and merge VMAs, map and unmap, all the time
        i = r.randrange(N)
        libc.mprotect(ctypes.c_void_p(base + i * 4096), 4096, r.choice((1, 3)))
        m = mmap.mmap(-1, 4096 * r.randint(1, 9)); m[0] = 1; m.close()
""")


def test_churning_target_maps_and_samples(tmp_path, run):
    """A target that splits, merges, maps and unmaps VMAs all the time (its raw maps reads come
    out torn, overlapping, now and then): every maps read pmaps keeps is well-formed, and every
    sample it stores loads; the readers read the whole recording."""
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    from pmaps.collector import Options, Process
    from pmaps.store.recording import load_recording

    p = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        with Process(p.pid, Options.fields("pagemap")) as proc:
            for _ in range(100):
                v = proc.refresh_vmas()
                assert all(a.end <= b.start for a, b in zip(v, v[1:]))
        r = run("record", str(p.pid), "-o", str(tmp_path / "rec"), "--interval", "0.01", "--count", "10",
                "--fields", "flags", "-q")
    finally:
        p.kill()
        p.wait()
    assert r.code == 0, r.err
    samples, bad = load_recording(tmp_path / "rec")
    assert not bad and samples
    dropped = json.loads((tmp_path / "rec" / "manifest.json").read_text()).get("dropped", [])
    assert len(samples) + len(dropped) == 10


# -- process names that are markup, mathtext or escape sequences --------------------------------
HOSTILE_COMMS = ["$\\frac{$", '<s>x&y"</s>', "\x1b[2J\x1b]0;pwn\x07", "[bold red]x[/]", "=cmd|'/C calc'"]


def _named_child(name: str) -> subprocess.Popen:
    """A child that set its own comm with prctl(PR_SET_NAME) and waits."""
    code = ("import ctypes,sys; n=sys.argv[1].encode(); "
            "assert ctypes.CDLL(None).prctl(15, ctypes.c_char_p(n), 0, 0, 0) == 0; "
            "print('ready', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    assert Path(f"/proc/{p.pid}/comm").read_bytes().rstrip(b"\n") == name.encode()[:15]
    return p


@pytest.fixture(scope="module")
def named():
    procs = [_named_child(n) for n in HOSTILE_COMMS]
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_hostile_comm_in_terminal_views(named, run):
    for p, name in zip(named, HOSTILE_COMMS):
        for argv in (["top", "-q", "-p", str(p.pid)], ["watch", "--once", str(p.pid)], ["--summary", str(p.pid)],
                     ["libs", "-q", "-p", str(p.pid)], [str(p.pid), str(p.pid)],
                     ["diff", "--wait", "0", str(p.pid)], ["shared", str(p.pid), str(p.pid)]):
            r = run(*argv)
            assert r.code == 0, (argv, r.err)
            assert "\x1b" not in r.out and "\x07" not in r.out, argv
            if "\x1b" in name and argv[0] in ("top", "watch"):
                assert "\\x1b[2J\\x1b]0;pwn\\x07" in r.out, r.out


def test_hostile_comm_in_csv(named, run):
    """A process name a spreadsheet would run as a formula is written with a leading apostrophe in
    every CSV (OWASP CSV injection); JSON keeps it exact; numbers, negative ones too, stay numbers."""
    import csv
    import io

    p = next(p for p, n in zip(named, HOSTILE_COMMS) if n.startswith("="))
    pid = str(p.pid)
    for argv in (["--format", "csv", pid], ["top", "-q", "-p", pid, "--format", "csv"],
                 ["shared", pid, pid, "--format", "csv"], ["diff", "--wait", "0", pid, "--format", "csv"],
                 ["wss", "--interval", "0.01", pid, "--format", "csv"],
                 ["libs", "-q", "-p", pid, "--format", "csv"]):
        r = run(*argv)
        assert r.code == 0, (argv, r.err)
        cells = [c for row in csv.reader(io.StringIO(r.out)) for c in row]
        assert cells and not [c for c in cells if c[:1] in ("=", "+", "@") or c[:1] == "-" and not (c[1:].isdigit() or c[1:] in ("--p", "w-p", "--s"))], argv
        if argv[0] in ("--format", "top"):
            assert "'=cmd|'/C calc'" in cells, (argv, r.out[:300])
    assert json.loads(run("top", "-q", "-p", pid, "--format", "json").out)["rows"][0]["comm"] == "=cmd|'/C calc'"


def test_path_bytes_not_utf8_are_escaped(run, tmp_path):
    """A mapped file whose name holds bytes that are not UTF-8 (0x9b, which some terminals take for
    CSI, and 0xff) is shown with them as \\xNN in every text view, never written back raw."""
    with mapping_file_named(os.fsencode(tmp_path) + b"/x\x9by\xffz.bin") as child:
        pid = str(child)
        snap = str(tmp_path / "s.npz")
        for argv in ([pid], ["--summary", pid], ["libs", "-q", "-p", pid], ["watch", "--once", pid],
                     ["wss", "--interval", "0.01", pid], ["shared", pid, pid], ["explain", pid],
                     ["diff", "--wait", "0", pid], ["save", "-o", snap, pid], ["show", snap],
                     ["top", "-q", "-p", pid, "--group-by", "program"]):
            r = run(*argv)
            assert r.code == 0, (argv, r.err)
            for text in (r.out, r.err):
                assert not any("\udc80" <= c <= "\udcff" for c in text), (argv, text[-300:])
            if argv[0] not in ("save", "top", "wss", "explain", "diff"):
                assert "x\\x9by\\xffz.bin" in r.out, (argv, r.out[-500:])


def test_csv_text_decoder():
    from pmaps.safetext import csv_text
    for text, want in (("=1+2", "'=1+2"), ("+x", "'+x"), ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
                       ("@SUM(A1)", "'@SUM(A1)"), ("\t=x", "'\t=x"), ("\r=x", "'\r=x"), ("-4096", "-4096"),
                       ("+1.5e3", "+1.5e3"), ("---p", "---p"), ("-w-s", "-w-s"), ("-", "-"), ("--x", "'--x"), ("/usr/lib/libc.so.6", "/usr/lib/libc.so.6"), ("[heap]", "[heap]"),
                       ("", ""), ("a=b", "a=b")):
        assert csv_text(text) == want, text


def test_hostile_comm_in_every_message(named, run, tmp_path):
    """The rest of the text a process name reaches, on stdout and stderr alike: explain, --folios of
    several processes, the notes of save, record and a diff of two processes, a diff's maps lines,
    and error messages. Each of them once wrote it raw."""
    evil = [(p, n) for p, n in zip(named, HOSTILE_COMMS) if "\x1b" in n]
    assert evil
    p, _ = evil[0]
    other = named[0]
    pid = str(p.pid)
    snap, rec = str(tmp_path / "s.npz"), str(tmp_path / "rec")
    for argv in (["explain", pid], ["--folios", pid, str(other.pid)], ["save", "-o", snap, pid],
                 ["record", "-o", rec, "--count", "1", pid], ["diff", snap, str(other.pid)],
                 ["diff", str(other.pid), snap]):
        r = run(*argv)
        assert r.code == 0, (argv, r.err)
        for text in (r.out, r.err):
            assert "\x1b" not in text and "\x07" not in text, (argv, text[-300:])
    assert "\\x1b[2J" in run("explain", pid).out
    # An error whose message quotes a path that holds a newline and an escape sequence: one line.
    bad = tmp_path / "x\x1b]0;pwn\x07\nsecond line.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    r = run("show", str(bad))
    assert r.code != 0 and r.err.count("\n") == 1 and "\x1b" not in r.err and "\x07" not in r.err, r.err


def test_hostile_comm_in_the_live_watch(named):
    from rich.console import Console

    from pmaps.collector import Options, Process, take_sample
    from pmaps.render.live import WatchView, rich_view

    for p in named:
        with Process(p.pid, Options.fields("pagemap")) as proc:
            s = take_sample(proc)
        view = WatchView.build(s, None, None, cost_ms=1, cpu_pct=1, interval=1, fields="pagemap")
        view.rows[0].name = "[/]\x1b[2J"  # a path that is markup and an escape sequence
        buf = io.StringIO()
        Console(file=buf, force_terminal=True, width=200).print(rich_view(view))
        text = buf.getvalue()
        assert "\x1b[2J" not in text and "\x1b]0;" not in text and "\x07" not in text
        assert "[/]" in text


def test_hostile_comm_in_pictures(named, tmp_path, run):
    pytest.importorskip("matplotlib", reason="pictures need the plot extra")
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    for i, p in enumerate(named):
        pids = str(p.pid)
        r = run("top", "-q", "-p", pids, "--pie", str(tmp_path / f"p{i}.png"), "--bar", str(tmp_path / f"b{i}.png"))
        assert r.code == 0, r.err
        rec = tmp_path / f"rec{i}"
        assert run("record", pids, "-o", str(rec), "--count", "2", "--interval", "0.01", "-q").code == 0
        for fmt in ("png", "svg", "html"):
            r = run("heatmap", str(rec), "-o", str(tmp_path / f"h{i}.{fmt}"))
            assert r.code == 0, r.err
        html = (tmp_path / f"h{i}.html").read_text()
        assert "<s>" not in html and "&lt;s&gt;x&amp;y&quot;&lt;/s&gt;" in html if "<s>" in HOSTILE_COMMS[i] else True


# -- standard output closed or full; Ctrl-C during start-up ---------------------------------------
@pytest.fixture(scope="module")
def sleeper():
    p = subprocess.Popen(["sleep", "300"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.mark.parametrize("argv", [["{pid}"], ["--summary", "{pid}"], ["top", "-q", "-n", "2"], ["--help"],
                                  ["watch", "--once", "{pid}"], ["--version"], ["diff", "--wait", "0", "{pid}"]],
                         ids=lambda a: " ".join(a))
@pytest.mark.parametrize("how", ["closed", "full"])
def test_stdout_closed_or_full(sleeper, argv, how):
    argv = [a.format(pid=sleeper) for a in argv]
    with open("/dev/full", "w") as full:
        r = subprocess.run([*PMAPS, *argv], stdout=full if how == "full" else None, stderr=subprocess.PIPE,
                           text=True, env=ENV, timeout=60,
                           preexec_fn=(lambda: os.close(1)) if how == "closed" else None)
    assert r.returncode == 1
    msg = one_line("\n".join(ln for ln in r.stderr.splitlines() if "not counted" not in ln))  # top's census
    assert msg == "pmaps: cannot write to standard output: " + ("it is closed" if how == "closed" else
                                                                "No space left on device")


def test_stdout_reader_leaves(sleeper):
    p = subprocess.Popen([*PMAPS, "--flags=all", str(sleeper), str(sleeper), str(sleeper)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    assert p.stdout is not None and p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=60) == 0
    assert p.stderr is not None and b"Traceback" not in p.stderr.read()


def test_commands_that_write_files_ignore_a_closed_stdout(sleeper, tmp_path):
    r = subprocess.run([*PMAPS, "save", str(sleeper), "-o", str(tmp_path / "s.npz")], stderr=subprocess.PIPE,
                       text=True, env=ENV, timeout=60, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and (tmp_path / "s.npz").stat().st_size > 0  # not written onto fd 1


SIGINT_AT = textwrap.dedent("""\
    import os, signal, sys

    MODULE = sys.argv[1]

    class Finder:
        # Ctrl-C arrives while MODULE is being imported.
        def find_spec(self, name, path=None, target=None):
            if name == MODULE:
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, Finder())
    sys.argv = ["pmaps", *sys.argv[2:]]
    from pmaps._entry import entry
    entry()
""")


@pytest.mark.parametrize("module", ["pmaps.cli", "pmaps.commands", "numpy", "datetime", "pmaps.collector",
                                    "pmaps.render.diff"])
def test_sigint_during_start_up(sleeper, module):
    """Ctrl-C at each stage of start-up: exit 130, no traceback (numpy turns an interrupt inside its
    C import into an ImportError: still an interruption)."""
    r = subprocess.run([sys.executable, "-c", SIGINT_AT, module, "diff", "--wait", "0", str(sleeper)],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r.stderr


UNRAISABLE = textwrap.dedent("""\
    import signal, sys, time
    from pmaps import cli

    signal.signal(signal.SIGINT, cli._interrupt)
    sys.unraisablehook = cli._unraisable

    class Finalized:
        def __del__(self):
            raise KeyboardInterrupt  # as a Ctrl-C that lands in a finalizer or a weakref callback

    try:
        Finalized()  # gone at once: Python cannot raise there
        time.sleep(5)
        print("lost")
    except KeyboardInterrupt:
        print("interrupted")
""")


def test_interrupt_raised_where_python_cannot_is_raised_again():
    """A Ctrl-C inside a weakref callback of the import system (commands import numpy after their
    read-ahead has started) or a finalizer is not printed and lost: it is raised again at once, and
    ends a sleep (the script sleeps 5 s: it must end well before)."""
    r = subprocess.run([sys.executable, "-c", UNRAISABLE], capture_output=True, text=True, env=ENV, timeout=4)
    assert r.stdout.strip() == "interrupted" and "Exception ignored" not in r.stderr, (r.stdout, r.stderr)


def test_sigint_ignored_when_started_ignoring_it(sleeper):
    """Started with SIGINT ignored (a background job of a shell without job control), pmaps keeps
    ignoring it, at start-up and after, as Python itself does: the command runs to its end."""
    def ignore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    for delay in (0.0, 0.05, 0.4):
        p = subprocess.Popen([*PMAPS, "diff", "--wait", "0.8", str(sleeper)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=ignore)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out, (delay, p.returncode, err)


def test_sigint_at_random_moments_of_start_up(sleeper):
    """Ctrl-C at 20 moments over the first 90 ms (seeded). pmaps' own start-up is covered; the
    interpreter's (site, runpy: before any pmaps code runs) is Python's, so a signal there may still
    show Python's KeyboardInterrupt: counted, and limited to that window."""
    rng = random.Random(8)
    tracebacks = []
    for _ in range(20):
        p = subprocess.Popen([*PMAPS, "diff", "--wait", "5", str(sleeper)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
        time.sleep(rng.uniform(0, 0.09))
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        if "Traceback" in err:  # Python's own start-up ("Could not import runpy module": exit 1)
            tracebacks.append(err)
            continue
        assert p.returncode in (130, -signal.SIGINT), (p.returncode, err)
        assert len(err.splitlines()) <= 1, err
    # A signal that arrived before _entry's handler was installed is raised at the first check after
    # it, which can be _entry's own module code (`in <module>`): still the interpreter's window.
    late = [t for t in tracebacks if any(m in t for m in ("pmaps/cli", "pmaps/commands", "numpy"))
            or ("pmaps/_entry" in t and "in <module>" not in t.split("pmaps/_entry")[-1].splitlines()[0])]
    assert not late, late[0]
    # How many land in the interpreter's own start-up depends on the machine's load (6 of 20 on a
    # busy one): what matters is that most reached pmaps and pmaps handled every one of those.
    assert len(tracebacks) <= 10, len(tracebacks)
