"""Hostile ground for files: what pmaps writes never replaces what is not its own, and what it
reads (anyone's file) is refused in one line, never a traceback, a hang or a memory bomb.

The fuzz test mutates a real snapshot, a real recording sample and a real manifest (flip,
truncate, insert, zero, duplicate; hostile JSON values; broken columns) and puts every mutation
through the readers in one batch process per kind, under a 3 GiB address-space limit with a
per-case timeout (tests/hostile_fuzz.py)."""
from __future__ import annotations

import base64
import collections
import io
import json
import os
import select
import shutil
import stat
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

HERE = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
PMAPS = [sys.executable, "-m", "pmaps"]
FUZZ_CASES = 320  # per kind (the issue asks for at least 300)
RLIMIT_AS = 3 << 30
CASE_TIMEOUT = 10  # seconds; the parent gives up on a silent batch after 3x this


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("pmaps"), err
    return lines[0]


@pytest.fixture(scope="module")
def sleeper():
    p = subprocess.Popen(["sleep", "300"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def files(sleeper, tmp_path_factory):
    """A real snapshot, and a real recording of 3 samples (its manifest included)."""
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    from pmaps.cli import main

    d = tmp_path_factory.mktemp("good")
    assert main(["save", str(sleeper), "-o", str(d / "s.npz")], io.StringIO(), io.StringIO()) == 0
    assert main(["record", str(sleeper), "-o", str(d / "rec"), "--count", "3", "--interval", "0.01", "-q"],
                io.StringIO(), io.StringIO()) == 0
    return d


# -- the fuzz loop ------------------------------------------------------------------------------
def _fuzz(kind: str, good: Path, tmp: Path, seed: int) -> list[dict]:
    """Run the batch; a case that hangs or kills the runner is recorded and the batch restarted after it."""
    results: list[dict] = []
    start = 0
    while start < FUZZ_CASES:
        job = {"kind": kind, "good": str(good), "seed": seed, "start": start, "count": FUZZ_CASES,
               "tmp": str(tmp), "rlimit": RLIMIT_AS, "timeout": CASE_TIMEOUT}
        p = subprocess.Popen([sys.executable, str(HERE / "hostile_fuzz.py"), json.dumps(job)], env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None
        while True:
            r, _, _ = select.select([p.stdout], [], [], 3 * CASE_TIMEOUT)
            line = p.stdout.readline() if r else None
            if not line:
                break
            results.append(json.loads(line))
            start = results[-1]["case"] + 1
        if line is None or p.wait(timeout=30) != 0 or start < FUZZ_CASES:
            p.kill()
            _, err = p.communicate()
            results.append({"case": start, "mutation": "?", "outcome": "hang" if line is None else "crash",
                            "detail": err[-2000:]})
            start += 1
    return results


@pytest.mark.parametrize("kind,name", [("snapshot", "s.npz"), ("sample", "rec/sample-000001.parquet"),
                                       ("manifest", "rec/manifest.json")])
def test_fuzz_every_reader(files, tmp_path, kind, name):
    results = _fuzz(kind, files / name, tmp_path, seed=9)
    counts = collections.Counter(r["outcome"] for r in results)
    print(f"fuzz {kind}: {len(results)} cases, {dict(counts)}")  # shown with -s; the note quotes them
    bad = [r for r in results if r["outcome"] not in ("ok", "bad")]
    assert not bad, bad[:3]
    assert len(results) == FUZZ_CASES
    if kind != "manifest":  # most mutations of a pmaps file must be caught, not read as data
        assert counts["bad"] > FUZZ_CASES // 2, counts


# -- bombs and special files ---------------------------------------------------------------------
def _npy_header(shape: tuple[int, ...], dtype: str = "<u8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_npz_declaring_a_huge_array_is_refused_before_inflating(files, tmp_path, run):
    """2 MB of zeros deflated, in a member whose npy header says 2 GiB: refused from the headers."""
    good = files / "s.npz"
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            if n == "pm.npy":
                data = _npy_header((1 << 28,)) + bytes(2 << 20)
            z.writestr(n, data)
    assert bomb.stat().st_size < 1 << 20
    r = run(str(bomb))
    assert r.code == 6 and "bomb.npz" in one_line(r.err)


def test_npz_zip_header_lying_about_its_size(files, tmp_path, run):
    """A member whose zip header declares 4 GiB inflated for a few KB compressed (deflate cannot
    expand more than 1032:1)."""
    data = bytearray((files / "s.npz").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo("vpn.npy")
    # The central directory's uncompressed size of vpn.npy: patch every copy of the field.
    size = info.file_size.to_bytes(4, "little")
    patched = bytes(data).replace(info.CRC.to_bytes(4, "little") + info.compress_size.to_bytes(4, "little") + size,
                                  info.CRC.to_bytes(4, "little") + info.compress_size.to_bytes(4, "little")
                                  + (0xFFFF0000).to_bytes(4, "little"))
    assert patched != bytes(data)
    bad = tmp_path / "lying.npz"
    bad.write_bytes(patched)
    r = run(str(bad))
    assert r.code == 6 and "lying.npz" in one_line(r.err)


def test_sample_metadata_bomb(files, tmp_path, run):
    """A sample whose zlib metadata inflates to 100 MB (over the 64 MB cap) is refused, without
    inflating it all."""
    import pyarrow.parquet as pq

    good = files / "rec" / "sample-000000.parquet"
    t = pq.read_table(good)
    m = json.loads(zlib.decompress(base64.b64decode(t.schema.metadata[b"pmaps"])))
    raw = json.dumps(m).encode()
    blob = zlib.compress(raw[:-1] + b" " * (100 << 20) + raw[-1:], 1)
    bad = tmp_path / "bomb.parquet"
    pq.write_table(t.replace_schema_metadata({b"pmaps": base64.b64encode(blob)}), bad)
    r = run("diff", str(bad), str(good))
    assert r.code == 6 and "inflates past" in one_line(r.err)


@pytest.mark.parametrize("value,field", [(1e300, "time"), (float("inf"), "time"), (float("nan"), "time"),
                                         (10 ** 400, "pid"), (-1, "seq")])
def test_sample_fields_out_of_range(files, tmp_path, run, value, field):
    import pyarrow.parquet as pq

    good = files / "rec" / "sample-000000.parquet"
    t = pq.read_table(good)
    m = json.loads(zlib.decompress(base64.b64decode(t.schema.metadata[b"pmaps"])))
    m[field] = value
    bad = tmp_path / "bad.parquet"
    pq.write_table(t.replace_schema_metadata({b"pmaps": base64.b64encode(zlib.compress(json.dumps(m).encode()))}),
                   bad)
    r = run("diff", str(bad), str(good))
    assert r.code == 6 and f"{field} " in one_line(r.err)


def test_snapshot_pages_outside_every_vma(files, tmp_path, run):
    z = dict(np.load(files / "s.npz"))
    m = json.loads(bytes(z["meta"]))
    m["vmas"] = m["vmas"][:1]  # the pages of every other VMA now lie outside
    z["meta"] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    np.savez(tmp_path / "outside.npz", **z)
    r = run("--summary", str(tmp_path / "outside.npz"))
    assert r.code == 6 and "outside every VMA" in one_line(r.err)


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"]" * 100_000, b'{"schema": "pmaps-recording/1", "interval": '
                                     + b"1" * 400 + b"}", b'{"schema": "pmaps-recording/1", "interval": 1e999}'])
def test_manifest_hostile_json(files, tmp_path, content):
    from pmaps.commands.heatmap import title_of
    from pmaps.store.recording import read_manifest

    d = tmp_path / "rec"
    shutil.copytree(files / "rec", d)
    (d / "manifest.json").write_bytes(content)
    m = read_manifest(d)
    assert "interval" not in m
    assert title_of(m, 1, "x", 3) == "pmaps heatmap: pid 1 (x), 3 samples"


@pytest.mark.parametrize("special", ["fifo", "zero", "loop", "big"])
def test_special_files_as_inputs(files, tmp_path, run, special):
    """A FIFO (would hang the open), /dev/zero (endless), a looping symlink, a file over the cap:
    one line each, for a snapshot, a sample and a manifest, and nothing hangs."""
    pytest.importorskip("matplotlib", reason="heatmap needs the plot extra")
    d = tmp_path / "rec"
    shutil.copytree(files / "rec", d)
    victims = [tmp_path / "x.npz", tmp_path / "x.parquet", d / "manifest.json"]
    for v in victims:
        v.unlink(missing_ok=True)
        if special == "fifo":
            os.mkfifo(v)
        elif special == "zero":
            v.symlink_to("/dev/zero")
        elif special == "loop":
            v.symlink_to(v)
        else:
            with open(v, "wb") as f:
                f.truncate(2 << 30)  # sparse: costs no disk
    want = {"fifo": "a FIFO, not a pmaps", "zero": "a character device, not a pmaps",
            "loop": "too many levels of symbolic links", "big": "more than a pmaps"}[special]
    r = run(str(victims[0]))
    assert r.code in (1, 6) and want in one_line(r.err)
    r = run("diff", str(victims[1]), str(files / "rec"))
    assert r.code in (1, 6) and want in one_line(r.err)
    r = run("heatmap", str(d), "-o", str(tmp_path / "h.svg"))  # the manifest is advisory: the picture is drawn
    assert r.code == 0, r.err


def test_heatmap_skips_bad_samples_with_a_count(files, tmp_path, run):
    pytest.importorskip("matplotlib", reason="heatmap needs the plot extra")
    d = tmp_path / "rec"
    shutil.copytree(files / "rec", d)
    (d / "sample-000001.parquet").write_bytes(b"PAR1 torn PAR1")
    r = run("heatmap", str(d), "-o", str(tmp_path / "h.png"))
    assert r.code == 0
    lines = r.err.splitlines()
    assert lines[0].startswith("pmaps: skipped 1 of 3 samples that fail validation")
    assert "2 samples" in lines[1]
    for f in ("sample-000000.parquet", "sample-000002.parquet"):
        (d / f).write_bytes(b"")
    r = run("heatmap", str(d), "-o", str(tmp_path / "h2.png"))
    assert r.code == 6 and "none of its 3 samples is readable" in one_line(r.err)


# -- writers: never replace what is not ours --------------------------------------------------
def _writers(sleeper: int, rec: Path, out: str) -> dict[str, list[str]]:
    return {
        "save": ["save", str(sleeper), "-o", out],
        "save-scan": ["top", "-q", "-p", str(sleeper), "--save-scan", out],
        "pie": ["top", "-q", "-p", str(sleeper), "--pie", out],
        "heatmap": ["heatmap", str(rec), "-o", out],
    }


@pytest.mark.parametrize("writer", ["save", "save-scan", "pie", "heatmap"])
def test_writers_refuse_devices_symlinks_and_existing_files(files, sleeper, tmp_path, run, writer):
    if writer in ("pie", "heatmap"):
        pytest.importorskip("matplotlib", reason="pictures need the plot extra")
    name = "x.png"
    target = tmp_path / name
    cmd = _writers(sleeper, files / "rec", str(target))[writer]
    # a device node (the bug turned /dev/full into a regular file)
    os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    r = run(*cmd)
    assert r.code == 1 and "it is a character device, not a regular file" in one_line(r.err)
    assert stat.S_ISCHR(target.lstat().st_mode)
    target.unlink()
    # a symlink, to stdout or to a file: never followed, never replaced (even with --force)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for dest in ("/proc/self/fd/1", str(victim)):
        target.symlink_to(dest)
        r = run(*cmd, "--force")
        assert r.code == 1 and "it is a symbolic link" in one_line(r.err)
        assert os.readlink(target) == dest
        target.unlink()
    assert victim.read_text() == "keep"
    # a regular file: only with --force
    target.write_text("old")
    r = run(*cmd)
    assert r.code == 2 and "exists: use --force" in one_line(r.err)
    assert target.read_text() == "old"
    r = run(*cmd, "--force")
    assert r.code == 0, r.err
    assert target.read_bytes() != b"old" and stat.S_IMODE(target.stat().st_mode) == 0o600
    # no missing parent is created; no temp file is left anywhere
    missing = tmp_path / "nodir" / "sub" / name
    r = run(*_writers(sleeper, files / "rec", str(missing))[writer])
    assert r.code == 1 and "no such" in one_line(r.err)
    assert not (tmp_path / "nodir").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "victim"])


@pytest.mark.parametrize("fmt", ["png", "svg", "html"])
def test_pictures_are_0600(files, tmp_path, run, fmt):
    pytest.importorskip("matplotlib", reason="heatmap needs the plot extra")
    old = os.umask(0o022)
    try:
        r = run("heatmap", str(files / "rec"), "-o", str(tmp_path / f"h.{fmt}"))
    finally:
        os.umask(old)
    assert r.code == 0, r.err
    assert stat.S_IMODE((tmp_path / f"h.{fmt}").stat().st_mode) == 0o600


def test_record_output_paths(sleeper, tmp_path, run):
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    r = run("record", str(sleeper), "-o", str(tmp_path / "no" / "such" / "dir"), "--count", "1")
    assert r.code == 1 and "parent directory does not exist" in one_line(r.err)
    assert not (tmp_path / "no").exists()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    r = run("record", str(sleeper), "-o", str(tmp_path / "dangling"), "--count", "1")
    assert r.code == 1 and "it exists and is a symbolic link" in one_line(r.err)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    r = run("record", str(sleeper), "-o", str(tmp_path / "link"), "--count", "1")
    assert r.code == 1 and "symbolic link" in one_line(r.err)
    assert list((tmp_path / "real").iterdir()) == []


def test_record_into_another_users_empty_directory(sleeper, tmp_path, run):
    pytest.importorskip("pyarrow", reason="recordings need the parquet extra")
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory of another user")
    d = tmp_path / "theirs"
    d.mkdir(mode=0o755)
    os.chown(d, 65534, 65534)
    r = run("record", str(sleeper), "-o", str(d), "--count", "1")
    assert r.code == 2 and "belongs to uid 65534" in one_line(r.err)
    st = d.stat()
    assert st.st_uid == 65534 and stat.S_IMODE(st.st_mode) == 0o755 and list(d.iterdir()) == []


def test_a_number_is_a_pid_not_a_file(sleeper, tmp_path, files):
    """`pmaps N` with a file named N in the current directory reads process N; ./N is the file."""
    shutil.copy(files / "s.npz", tmp_path / str(sleeper))
    r = subprocess.run([*PMAPS, "--format", "json", str(sleeper)], cwd=tmp_path, capture_output=True, text=True,
                       env=ENV, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["processes"][0]["pid"] == sleeper
    (tmp_path / "123456789").write_bytes((files / "s.npz").read_bytes())
    r = subprocess.run([*PMAPS, "123456789"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 3 and "no such process: 123456789" in one_line(r.stderr)
    r = subprocess.run([*PMAPS, "./123456789"], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("argv", [["{}"], ["save", "{}", "-o", "x"], ["record", "{}", "-o", "x"], ["watch", "{}"],
                                  ["diff", "{}"], ["wss", "{}"], ["top", "-p", "{}"], ["shared", "{}", "1"],
                                  ["diff", "DIR@{}"]], ids=lambda a: a[0])
def test_a_5000_digit_pid(run, files, argv):
    big = "9" * 5000
    argv = [a.replace("DIR", str(files / "rec")).replace("{}", big) for a in argv]
    r = run(*argv)
    assert r.code == 2 and len(one_line(r.err)) < 200
