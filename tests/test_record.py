"""pmaps record: the recording format round trip, SIGKILL safety, target exit, file modes."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import ROOT
from memchild import MemChild
from pmaps.collector import Process, take_sample
from pmaps.errors import BadSnapshot
from pmaps.kernel.maps import VmaTable
from pmaps.store.recorder import Recorder
from pmaps.store.recording import load_sample, read_manifest, sample_files

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")


def pmaps_popen(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-m", "pmaps", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@needs_root
@pytest.mark.parametrize("pfn", [False, True])
def test_round_trip(tmp_path, pfn):
    with MemChild(["a:anon:256K:every=3", "t:thp:2M"]) as mc, Process(mc.pid) as proc:
        s = take_sample(proc, with_pfn=pfn, seq=7)
    rec = Recorder(tmp_path / "r", s.pid, s.comm, 1.0, pfn).open()
    rec.add(s)
    (f,) = sample_files(tmp_path / "r")
    t = load_sample(f)
    assert (t.pid, t.comm, t.seq, t.vmas, t.known) == (s.pid, s.comm, 7, s.vmas, s.known)
    for col in ("vma", "vpn", "count", "state", "mapcount"):
        assert np.array_equal(getattr(t, col), getattr(s, col)), col
    assert (t.pfn is not None) == pfn
    if pfn:
        assert np.array_equal(t.pfn, s.pfn) and t.pfn.any()
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "r").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "r" / "manifest.json").st_mode) == 0o600
    # ranges, not pages: one range per written page of a (every third), a few for the 512-page THP
    def n_ranges(name):
        reg = mc.regions[name]
        return int(((s.vpn >= reg["start"] >> 12) & (s.vpn < reg["end"] >> 12)).sum())

    assert n_ranges("a") == len(range(0, 64, 3)) and n_ranges("t") <= 4


@needs_root
def test_prepared_vmas_are_the_ones_packed_in_add(tmp_path):
    """Recorder.prepare packs the table's VMAs on a thread while the sample is read: the sample file
    is the same bytes as without it; a sample of another table packs its own."""
    from pmaps.store.recording import sample_bytes

    with MemChild(["a:anon:64K"]) as mc, Process(mc.pid) as proc:
        s = take_sample(proc, seq=0)
        prepared = Recorder(tmp_path / "p", s.pid, s.comm, 1.0).open()
        prepared.prepare(s.table)
        prepared.add(s)
        plain = Recorder(tmp_path / "q", s.pid, s.comm, 1.0).open()
        plain.add(s)
        assert prepared._vmas is not None and prepared._vmas.table is s.table
        other = Recorder(tmp_path / "o", s.pid, s.comm, 1.0).open()
        other.prepare(VmaTable.of_vmas(s.vmas[:1]))  # not the sample's table: not used
        other.add(s)
        assert other._vmas is not None and other._vmas.table is s.table
    (a,), (b,), (c,) = (sample_files(tmp_path / d) for d in "pqo")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes() == sample_bytes(s, plain._vmas)


@needs_root
def test_recording_load_reuses_an_unchanged_vma_list(tmp_path):
    """load_recording decodes a VMA list once while the samples list the same VMAs, and again when
    they change; each sample's VMAs equal its own file's decoded alone."""
    from pmaps.store.recording import load_recording

    with MemChild(["a:anon:64K", "b:anon:64K"]) as mc, Process(mc.pid) as proc:
        rec = Recorder(tmp_path / "r", proc.pid, proc.comm, 1.0).open()
        rec.add(take_sample(proc, seq=0))
        rec.add(take_sample(proc, seq=1))
        mc.cmd("free b")  # the VMA stays: the same list
        proc.refresh_table()
        extra = MemChild(["c:anon:16K"])  # another process's sample: another VMA list
    with extra, Process(extra.pid) as other:
        rec.add(take_sample(other, seq=2))
    samples, bad = load_recording(tmp_path / "r")
    assert not bad and len(samples) == 3
    assert samples[1].table is samples[0].table  # reused, not decoded again
    assert samples[2].table is not samples[1].table and samples[2].vmas != samples[1].vmas
    for s, f in zip(samples, sample_files(tmp_path / "r")):
        assert s.vmas == load_sample(f).vmas


# A child that maps one more anonymous page (a VMA of its own, PROT_READ between writable
# neighbours) for each line it reads, and answers with the count.
MAPPER = r"""
import mmap, sys
keep = []
print("ready", flush=True)
for line in sys.stdin:
    keep.append(mmap.mmap(-1, 4096 * (len(keep) + 1), prot=mmap.PROT_READ))
    print(len(keep), flush=True)
"""


@pytest.mark.parametrize("fields", ["full", "pagemap"])
def test_first_sample_rereads_maps(fields):
    """The first sample (seq 0) reads its pages with open()'s table while maps is read again
    beside them: when maps changed in between, the sample is taken again with the new VMAs;
    when not, it keeps open()'s table (the same object). Either way, as refresh_table first."""
    from pmaps.collector import Options
    from pmaps.kernel.maps import read_table

    p = subprocess.Popen([sys.executable, "-c", MAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        with Process(p.pid, Options.fields(fields)) as proc:
            opened = proc.table
            s = take_sample(proc, seq=0)
            assert s.table is opened
            p.stdin.write("map\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "1"
            proc2 = Process(p.pid, Options.fields(fields)).open()
            with proc2:
                p.stdin.write("map\n")
                p.stdin.flush()
                assert p.stdout.readline().strip() == "2"
                stale = proc2.table
                s2 = take_sample(proc2, seq=0)
                now = read_table(p.pid)
                assert s2.table is not stale and s2.table.source == now.source
                assert len(s2.table) == len(stale) + 1
                assert [v.start for v in s2.vmas] == [v.start for v in now.vmas]
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("fields", ["full", "pagemap"])
def test_later_samples_reread_maps_while_steady(fields):
    """A later sample guesses maps unchanged (reads the pages with the last table while maps is
    read again beside them) only while it was unchanged at the sample before: a change is
    found either way, and the sample after a change reads maps first."""
    from pmaps.collector import Options
    from pmaps.kernel.maps import read_table

    p = subprocess.Popen([sys.executable, "-c", MAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "ready"

        def mapped(n: int) -> None:
            p.stdin.write("map\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == str(n)

        with Process(p.pid, Options.fields(fields)) as proc:
            opened = proc.table
            assert take_sample(proc, seq=0).table is opened and proc.maps_steady
            assert take_sample(proc, seq=1).table is opened and proc.maps_steady
            mapped(1)
            s2 = take_sample(proc, seq=2)  # guessed, found changed, taken again
            assert s2.table is not opened and s2.table.source == read_table(p.pid).source
            assert len(s2.table) == len(opened) + 1 and not proc.maps_steady
            mapped(2)
            s3 = take_sample(proc, seq=3)  # maps read first: the new VMA is in
            assert len(s3.table) == len(opened) + 2 and s3.table.source == read_table(p.pid).source
            assert not proc.maps_steady
            s4 = take_sample(proc, seq=4)  # read first, unchanged: the next one guesses again
            assert s4.table is s3.table and proc.maps_steady
            mapped(3)
            s5 = take_sample(proc, seq=5)
            assert len(s5.table) == len(opened) + 3 and not proc.maps_steady
            assert [v.start for v in s5.vmas] == [v.start for v in read_table(p.pid).vmas]
    finally:
        p.kill()
        p.wait()


def test_read_ahead_is_taken_once_by_its_process():
    """procfs.read_ahead reads a file whole on a thread; take_ahead gives it once, and only to the
    process with the start time it was read from; a failed read or a dropped one gives None."""
    from pmaps.kernel import procfs
    from pmaps.kernel.status import read_start_time

    p = subprocess.Popen([sys.executable, "-c", MAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        born = read_start_time(p.pid)
        procfs.read_ahead(p.pid, "maps")
        assert procfs.take_ahead(p.pid, "maps", born) == procfs.read_file(p.pid, "maps")
        assert procfs.take_ahead(p.pid, "maps", born) is None  # once
        procfs.read_ahead(p.pid, "maps")
        assert procfs.take_ahead(p.pid, "maps", born + 1) is None  # another process, given the PID since
        procfs.read_ahead(p.pid, "maps")
        procfs.drop_ahead()
        assert procfs.take_ahead(p.pid, "maps", born) is None
    finally:
        p.kill()
        p.wait()
    procfs.read_ahead(p.pid, "maps")  # gone: the read fails, and the caller's own read reports it
    assert procfs.take_ahead(p.pid, "maps", born) is None


def test_read_ahead_is_not_taken_after_an_exec():
    """An exec keeps the PID and the start time but replaces the address space: what was read ahead
    before it is not taken after it (the stack's start, stat field 28, moved)."""
    from pmaps.kernel import procfs
    from pmaps.kernel.status import read_start_time

    code = "import os, sys; print('ready', flush=True); sys.stdin.readline(); os.execv('/bin/sleep', ['sleep', '30'])"
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None and p.stdout.readline().strip() == "ready"
        born = read_start_time(p.pid)
        procfs.read_ahead(p.pid, "maps")
        procfs._AHEAD[(p.pid, "maps")][0].join()
        p.stdin.write("exec\n")
        p.stdin.flush()
        deadline = time.monotonic() + 10
        while procfs.read_file(p.pid, "comm").strip() != b"sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert read_start_time(p.pid) == born
        assert procfs.take_ahead(p.pid, "maps", born) is None
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("fields", ["full", "pagemap"])
def test_read_ahead_maps_is_checked_by_the_first_sample(fields):
    """A command reads maps ahead while it imports; open() takes that table, and the first sample
    reads maps again beside its pages: a VMA made in between is in the sample."""
    from pmaps.collector import Options
    from pmaps.kernel import procfs
    from pmaps.kernel.maps import read_table

    p = subprocess.Popen([sys.executable, "-c", MAPPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdin is not None and p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        procfs.read_ahead(p.pid, "maps")
        procfs._AHEAD[(p.pid, "maps")][0].join()  # read before the VMA below is made
        ahead = read_table(p.pid)
        p.stdin.write("map\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "1"
        with Process(p.pid, Options.fields(fields)) as proc:
            assert proc.table.source == ahead.source  # the read ahead, not a read now
            s = take_sample(proc, seq=0)
            now = read_table(p.pid)
            assert len(s.table) == len(ahead) + 1 and s.table.source == now.source
    finally:
        p.kill()
        p.wait()


@needs_root
def test_sigkill_keeps_completed_samples(tmp_path):
    out = tmp_path / "r"
    with MemChild(["a:anon:4M"]) as mc:
        p = pmaps_popen("record", str(mc.pid), "-o", str(out), "--interval", "0.02", "-q")
        try:
            deadline = time.monotonic() + 20
            while len(read_manifest(out).get("samples", [])) < 5 and time.monotonic() < deadline:
                mc.cmd("touch a 0 64")
                time.sleep(0.01)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
    files = sample_files(out)
    listed = read_manifest(out)["samples"]
    assert len(files) >= 5 and len(files) >= len(listed)
    assert [f["file"] for f in listed] == [f.name for f in files[: len(listed)]]  # the manifest may lag
    for f in files:
        assert load_sample(f).pid == mc.pid  # every completed sample is readable


@needs_root
def test_target_exit_ends_cleanly(tmp_path, wait_for):
    mc = MemChild(["a:anon:64K"]).start()
    p = None
    try:
        p = pmaps_popen("record", str(mc.pid), "-o", str(tmp_path / "r"), "--interval", "0.05", "-q")
        # The target exits once a sample is on record (or pmaps gave up: its error is asserted on).
        wait_for(lambda: p.poll() is not None or read_manifest(tmp_path / "r").get("samples"),
                 "the first sample in the manifest")
        mc.close()
        _, err = p.communicate(timeout=30)
    finally:
        mc.close()
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    m = read_manifest(tmp_path / "r")
    assert m["end"]["reason"] == "exited" and m["samples"], m
    assert "exited" in err


@needs_root
def test_count_and_refuses_existing(tmp_path, run):
    with MemChild(["a:anon:64K"]) as mc:
        r = run("record", str(mc.pid), "-o", str(tmp_path / "r"), "--count", "2", "--interval", "0.05")
        assert r.code == 0, r.err
        assert len(sample_files(tmp_path / "r")) == 2 and "bytes per sample" in r.err
        assert read_manifest(tmp_path / "r")["end"]["reason"] == "count"
        r = run("record", str(mc.pid), "-o", str(tmp_path / "r"), "--count", "1")
        assert r.code == 2 and "already holds a recording" in r.err


def test_truncated_sample_is_bad_snapshot(tmp_path):
    p = tmp_path / "sample-000000.parquet"
    p.write_bytes(b"PAR1" + b"\0" * 50)
    with pytest.raises(BadSnapshot):
        load_sample(p)


def test_cpu_budget_stretches_the_interval():
    """budget_interval: a sample of 0.2 s under a 10% budget is taken at most every 2 s."""
    from pmaps.commands import budget_interval

    assert budget_interval(0.5, 0.2, 10) == pytest.approx(2.0)
    assert budget_interval(5.0, 0.2, 10) == 5.0 and budget_interval(0.5, 0.2, None) == 0.5


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags)")
def test_record_under_a_tiny_budget(run, tmp_path):
    """--max-cpu 1: samples are spaced by their cost x 100, far beyond the 10 ms interval."""
    with MemChild(["a:anon:64M"]) as mc:
        r = run("record", str(mc.pid), "-o", str(tmp_path / "rec"), "--interval", "0.01", "--count", "3",
                "--max-cpu", "1", "-q")
        assert r.code == 0, r.err
        m = json.loads((tmp_path / "rec" / "manifest.json").read_text())
        t = [s["time"] for s in m["samples"]]
        cost = min(s["ms"] for s in m["samples"]) / 1000
        assert len(t) == 3 and min(b - a for a, b in zip(t, t[1:])) >= 0.9 * cost * 100


def test_record_writes_with_the_system_allocator(tmp_path):
    """`pmaps record` (its own process) has pyarrow allocate with malloc: mimalloc, its default,
    kept ~30 MB more per recorder. The samples are the same files."""
    code = ("import pyarrow as pa, sys; from pmaps.cli import main; rc = main(sys.argv[1:]); "
            "print(pa.default_memory_pool().backend_name); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["PYTHONPATH"] = str(ROOT / "src")
    r = subprocess.run([sys.executable, "-c", code, "record", str(os.getpid()), "-o", str(tmp_path / "r"), "-q",
                        "--count", "1", "--fields", "pagemap"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["system"]
    assert load_sample(sample_files(tmp_path / "r")[0]).pid == os.getpid()


def test_packed_metadata_is_the_json():
    """A sample's metadata is the head deflated per sample, then the VMAs deflated once per maps:
    one zlib stream of exactly sample_json's text, whatever the VMAs (none, odd paths)."""
    import dataclasses
    import zlib

    from helpers import ROOT as root
    from pmaps.kernel.maps import Vma, VmaTable
    from pmaps.store.codec import inflate
    from pmaps.store.recording import PackedVmas, packed_meta, sample_json

    s = load_sample(root / "tests" / "golden" / "time_a.parquet")
    odd = [v._replace(path=p) for v, p in zip(s.vmas, ["é\udcff", "\x1b[0m", '"q"\\', ""] * len(s.vmas))]
    # Many VMAs: pieces long enough to be deflated on the helper thread.
    many = [Vma(i << 14, (i << 14) + 8192, "rw-p", 0, "00:00", i % 7, ["", "/x", "é"][i % 3]) for i in range(30000)]
    for table in (s.table, VmaTable.of_vmas(odd), VmaTable.of_vmas([]), VmaTable.of_vmas(many)):
        t = dataclasses.replace(s, table=table, seq=3, time=1.5, cost=0.25)
        packed = PackedVmas.of(table)
        for data in (packed_meta(t, packed), packed_meta(t)):
            assert inflate(data) == zlib.decompress(data) == sample_json(t).encode()


def test_private_parquet_writer_writes_what_the_public_one_does():
    """sample_bytes writes with pyarrow._parquet's writer (pyarrow.parquet's import is slow):
    the same bytes as pyarrow.parquet.ParquetWriter, with and without PFNs, VMAs or ranges."""
    import dataclasses

    from helpers import ROOT as root
    from pmaps.store.recording import loads_sample, sample_bytes

    s = load_sample(root / "tests" / "golden" / "time_a.parquet")
    with_pfn = dataclasses.replace(s, pfn=np.arange(len(s), dtype=np.uint64) * 7)
    empty = dataclasses.replace(s, vma=s.vma[:0], vpn=s.vpn[:0], count=s.count[:0], state=s.state[:0],
                                mapcount=s.mapcount[:0])
    for t in (s, with_pfn, empty):
        data = sample_bytes(t)
        assert data == sample_bytes(t, public_writer=True)
        back = loads_sample(data)
        assert np.array_equal(back.vpn, t.vpn) and (back.pfn is None) == (t.pfn is None)


def test_vmas_json_in_pieces():
    """The VMAs' JSON made a few thousand VMAs at a time is json.dumps of them all."""
    import json

    from pmaps.kernel.maps import Vma, VmaTable, decode_table
    from pmaps.store.codec import encode_vmas, vmas_json

    paths = ["", "/lib/x.so", "é\udcff", '"q"\\', "\x1b"]
    vmas = [Vma(i << 13, (i << 13) + 4096, "rw-p", i * 7, "00:00", i % 3, paths[i % 5]) for i in range(20000)]
    for n in (0, 1, 3, 4, 5, 20000):
        t = VmaTable.of_vmas(vmas[:n])
        assert "".join(vmas_json(t, rows=4 if n < 10 else 8192)) == json.dumps(encode_vmas(t))
    # Numbers of every length up to the u64 limit, perms and devs of several kinds, and a table
    # decoded from maps text (its perms and devs read by numpy).
    top = (1 << 64) - 1
    edge = [Vma(top - (2 * i + 2) * 4096 if i % 2 else i * 8192, 0, ["r--p", "rwxs", "---p"][i % 3],
                [0, 9, 10, 99999999, 100000000, top, 1 << 63][i % 7], ["00:00", "fd:01", "103:02"][i % 5 % 3],
                (10 ** (i % 20)) - (i % 2), paths[i % 5]) for i in range(200)]
    edge = sorted((v._replace(end=v.start + 4096) for v in edge), key=lambda v: v.start)
    for t in (VmaTable.of_vmas(edge), decode_table("".join(v._replace(path=v.path.encode("ascii", "replace").decode())
                                                                  .maps_line() + "\n" for v in edge[:150]).encode())):
        for rows in (1, 7, 8192):
            assert "".join(vmas_json(t, rows=rows)) == json.dumps(encode_vmas(t))
