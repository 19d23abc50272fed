"""pmaps heatmap: pixels from a real recording, the files it writes, a missing extra."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from memchild import MemChild
from pmaps.render.heatmap import COLORS, build
from pmaps.store.recording import load_sample, sample_files

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kpageflags of a live child)")
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A live child recorded twice (two recordings of one sample): needs root."""
    import io

    from pmaps.cli import main

    d = tmp_path_factory.mktemp("heat") / "rec"
    with MemChild(["a:anon:4M", "b:anon:4M:skip=0-1024"]) as mc:
        assert main(["record", str(mc.pid), "-o", str(d), "--count", "1", "-q"], io.StringIO(), io.StringIO()) == 0
        mc.cmd("free a 0 1024")
        mc.cmd("touch b 0 1024")
        assert main(["record", str(mc.pid), "-o", str(d / "2"), "--count", "1", "-q"], io.StringIO(),
                    io.StringIO()) == 0
        regions = mc.regions
    return d, regions


@pytest.fixture(scope="module")
def golden_recording(tmp_path_factory):
    """The golden sample pair as a recording directory (no manifest: it is advisory): runs anywhere."""
    d = tmp_path_factory.mktemp("golden") / "rec"
    d.mkdir()
    for i, name in enumerate(("time_a.parquet", "time_b.parquet")):
        shutil.copy(GOLDEN / name, d / f"sample-{i:06d}.parquet")
    return d


@pytest.fixture(params=["golden", pytest.param("live", marks=needs_root)])
def any_recording(request):
    """The golden recording (runs anywhere), and a live one (root)."""
    if request.param == "live":
        return request.getfixturevalue("recording")[0]
    return request.getfixturevalue("golden_recording")


@needs_root
def test_pixels(recording):
    d, regions = recording
    samples = [load_sample(sample_files(d)[0]), load_sample(sample_files(d / "2")[0])]
    heat = build(samples, width=4000)
    assert heat.image.shape[0] == 2
    # Column of a's first page and of b's first page, in squeezed coordinates.
    ea = [x for x, lab in heat.vma_edges if lab == f"{regions['a']['start']:x}"][0]
    eb = [x for x, lab in heat.vma_edges if lab == f"{regions['b']['start']:x}"][0]
    dirty, absent = COLORS[2], COLORS[0]
    assert np.allclose(heat.image[0, int(ea) + 1], dirty) and np.allclose(heat.image[1, int(ea) + 1], absent)
    assert np.allclose(heat.image[0, int(eb) + 1], absent) and np.allclose(heat.image[1, int(eb) + 1], dirty)


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_files(run, any_recording, tmp_path, suffix):
    d = any_recording
    out = tmp_path / f"h{suffix}"
    r = run("heatmap", str(d), "-o", str(out))
    assert r.code == 0, r.err
    head = out.read_bytes()[:200]
    assert {".png": b"\x89PNG", ".svg": b"<svg", ".html": b"<!doctype html>"}[suffix] in head


def test_without_matplotlib_one_line(run, golden_recording, tmp_path, monkeypatch):
    d = golden_recording
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = run("heatmap", str(d), "-o", str(tmp_path / "x.png"))
    assert r.code == 5 and r.err.strip() == "pmaps: heatmaps need matplotlib: pip install 'pmaps[plot]'"
