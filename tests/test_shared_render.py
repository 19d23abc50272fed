"""render.shared: the per-VMA rows written from the columns are the row dicts' text, in every format."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest

from pmaps.analysis.sharing import Sharing
from pmaps.kernel.maps import Vma, VmaTable
from pmaps.render import shared as shared_render
from pmaps.render.output import View
from pmaps.render.rows import decimal_cells, join_cells, text_cells
from pmaps.render.shared import SharedView, pair_view, vma_view
from pmaps.render.table import printable

ODD = ["", "/usr/lib/libc.so.6", "[heap]", "com,ma", 'quo"te', "new\nline", "cr\rx", "é ü", "x\udcffy", "\x1b[31m",
       "a\u202eb", "trail  ", "   ", "tab\tx", "日本語", "back\\slash", "\u3000", " lead", "/dev/zero (deleted)"]
UNITS = ["human", "bytes", "k", "m", "g"]


def row_text(sh: Sharing, unit: str) -> str:
    """SharedView's text as the row dicts give it (RowsView)."""
    out = io.StringIO()
    pair_view(sh).text(out, unit)
    out.write(f"\n# VMAs of {sh.pids[0]} ({printable(sh.comms[0])}): resident, and how much is the same pages as in "
              + ", ".join(map(str, sh.pids[1:])) + "\n")
    vma_view(sh).text(out, unit)
    return out.getvalue()


def written(view: View, fmt: str, unit: str, dispatch: bool = False) -> str:
    out = io.StringIO()
    (View.write_to if dispatch else type(view).write_to)(view, out, fmt, unit)
    return out.getvalue()


def made_up(rng: random.Random, n: int, pids: list[int], big: bool = False, nul: bool = False) -> Sharing:
    paths = ODD + ["nul\0"] * nul  # a NUL (not from maps: a file's VMA list) takes CSV's row path
    vmas, start = [], 0x400000
    for _ in range(n):
        start += rng.choice([0x1000, 0x3000, 1 << 30]) if not big else 1 << 44
        end = start + 0x1000 * rng.randint(1, 600)
        vmas.append(Vma(start, end, rng.choice(["r--p", "rw-p", "r-xp", "rw-s", "---p"]), 0, "00:00", 0,
                        rng.choice(paths)))
        start = end
    sizes = [0, 1, 2, 7, 255, 300_000] + [1 << 40, (1 << 40) + 3] * big  # past 2**53 / 100 bytes: Python's %
    pages = np.array([rng.choice(sizes) for _ in range(n)], dtype=np.int64)
    shared = np.array([rng.randint(0, p) for p in pages.tolist()], dtype=np.int64)
    withs = np.array([[rng.randint(0, s) for s in shared.tolist()] for _ in pids[1:]], dtype=np.int64)
    page = np.int64(4096)
    pairs = [(a, b, rng.randint(0, 1 << 34)) for i, a in enumerate(pids) for b in pids[i + 1:]]
    return Sharing(pids, ["srv\x1b", *["wörker"] * (len(pids) - 1)], [rng.randint(0, 1 << 34) for _ in pids], pairs,
                   VmaTable.of_vmas(vmas), pages * page, shared * page, withs.reshape(len(pids) - 1, n) * page)


@pytest.mark.parametrize("chunk", [7, shared_render.CHUNK])
@pytest.mark.parametrize("seed", range(8))
def test_columns_write_the_rows(seed, chunk, monkeypatch):
    monkeypatch.setattr(shared_render, "CHUNK", chunk)  # rows made a few at a time: chunks' seams
    rng = random.Random(seed)
    pids = [[100, 101], [100, 101, 102], [7, 8, 7], [5, 9, 9, 5]][seed % 4]
    sh = made_up(rng, [0, 1, 50, 400][seed % 4] if seed < 4 else 300, pids, big=seed == 5, nul=seed >= 6)
    view = SharedView(sh)
    for unit in UNITS:
        assert written(view, "text", unit) == row_text(sh, unit)
    for fmt in ("json", "ndjson", "csv"):
        assert written(view, fmt, "human") == written(view, fmt, "human", dispatch=True), fmt


def test_sharing_objects_from_columns():
    """Sharing.vmas: the objects, with a pid named twice keeping its last column (as a dict does)."""
    sh = made_up(random.Random(1), 20, [1, 2, 1])
    assert [v.vma for v in sh.vmas] == sh.table.vmas
    assert [v.with_each for v in sh.vmas] == [{2: a, 1: b} for a, b in zip(sh.vma_with[0].tolist(),
                                                                             sh.vma_with[1].tolist())]


def test_cells_join_to_str():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.integers(-(1 << 62), 1 << 62, 2000), [0, -1, 9, 10, -10, (1 << 63) - 1]])
    texts = ["", "a", "é", "日本", "x\udcffy"]
    idx = rng.integers(0, len(texts), len(v))
    got = join_cells([b"[", decimal_cells(v), b"|", text_cells(texts, idx), b"]\n"], len(v))
    assert got.decode("utf-8", "surrogatepass") == "".join(f"[{a}|{texts[i]}]\n" for a, i in zip(v.tolist(), idx))
    assert join_cells([decimal_cells(np.zeros(0, np.int64)), b","], 0) == b""
