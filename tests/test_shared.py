"""pmaps shared: pages physically in common between a parent and its forked workers."""
from __future__ import annotations

import json
import os

import pytest
from helpers import PAGE, diverged_family, pmaps_cmd
from test_shared_render import UNITS, row_text, written

from pmaps import collect
from pmaps.analysis.sharing import sharing
from pmaps.render.shared import SharedView

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (PFNs)")


@pytest.fixture(scope="module")
def family():
    with diverged_family() as fc:
        yield fc


def test_cow_left_per_vma(run, family):
    """Parent's 256-page COW region: w0 wrote 0-63, w1 0-127, w2 nothing."""
    info = family.info
    w = info["workers"]
    r = run("shared", *map(str, family.pids), "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    (cow,) = [v for v in doc["vmas"] if v["start"] == info["regions"]["cow"][0]]
    assert cow["rss"] == 256 * PAGE
    assert cow["shared"] == 256 * PAGE  # worker 2 still shares every page
    assert cow["shared_with"] == {str(w[0]): 192 * PAGE, str(w[1]): 128 * PAGE, str(w[2]): 256 * PAGE}
    assert cow["private"] == 0
    pairs = {tuple(p["pids"]): p["shared_bytes"] for p in doc["pairs"]}
    assert len(pairs) == 6
    # Pair totals hold the region's part plus the interpreter's own COW-shared pages (which the
    # workers' interpreters may still be diverging from): outside the region, the same VMAs' figures.
    others = [v for v in doc["vmas"] if v is not cow]
    rest = sum(v["shared_with"][str(w[2])] - v["shared_with"][str(w[1])] for v in others)
    assert pairs[(info["parent"], w[2])] - pairs[(info["parent"], w[1])] - rest == 128 * PAGE
    # Symmetric to the per-VMA view of the parent: the sum over its VMAs is the pair total.
    assert sum(v["shared_with"][str(w[2])] for v in doc["vmas"]) == pairs[(info["parent"], w[2])]


def test_formats(run, family):
    pids = list(map(str, family.pids))
    nd = [json.loads(x) for x in run("shared", *pids, "--format", "ndjson").out.splitlines()]
    assert sum(x["kind"] == "pair" for x in nd) == 6 and all(x["schema"] == "pmaps-shared/1" for x in nd)
    csv = run("shared", *pids, "--format", "csv").out.splitlines()
    assert csv[0].startswith("start,end,perms,path,rss,shared,private,with_")
    text = run("shared", *pids).out
    assert "W/" in text and "# VMAs of" in text


def test_needs_root_says_so():
    r = pmaps_cmd("shared", str(os.getpid()), str(os.getppid()), user=True, check=False)
    assert r.returncode == 4
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and "root" in r.stderr


def test_needs_two(run):
    assert run("shared", "1").code == 2


def test_rows_from_columns_on_real_processes(run, family):
    """The per-VMA rows written from the columns are the row dicts' text in every format; and
    kpageflags (--no-scan: pagemap read, the zero page told by its flags) gives the same figures
    as PAGEMAP_SCAN's categories without them."""
    sh = sharing([collect(p, counts=False) for p in family.pids])
    view = SharedView(sh)
    for unit in UNITS:
        assert written(view, "text", unit) == row_text(sh, unit)
    for fmt in ("json", "ndjson", "csv"):
        assert written(view, fmt, "human") == written(view, fmt, "human", dispatch=True), fmt
    pids = list(map(str, family.pids))
    assert run("shared", *pids, "--format", "json").out == run("shared", *pids, "--no-scan", "--format", "json").out
