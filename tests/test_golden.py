"""Golden tests for every human-facing format, from a captured snapshot (golden/layout.npz).

Re-bless after an intended change:  PMAPS_BLESS=1 python -m pytest tests/test_golden.py
Re-capture the input:               python tests/golden/capture.py  (root, swap on)
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
INPUT = str(GOLDEN / "layout.npz")

CASES = {
    "rfc.txt": [INPUT],
    "all.txt": ["--flags=all", INPUT],
    "pfn_swap.txt": ["--pfn", "--swap", INPUT],
    "summary.txt": ["--summary", INPUT],
    "summary_k.txt": ["--summary", "-k", INPUT],
    "summary.csv": ["--summary", "--format", "csv", INPUT],
    "legend.txt": ["--legend"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(run, name):
    r = run(*CASES[name])
    assert r.code == 0, r.err
    path = GOLDEN / name
    if os.environ.get("PMAPS_BLESS"):
        path.write_text(r.out)
    assert r.out == path.read_text(), f"{name} differs; PMAPS_BLESS=1 to accept"
