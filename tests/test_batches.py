"""Ranges and footprints computed a batch of many VMAs at a time equal those computed VMA by VMA,
wherever the batches are cut (pure: synthetic pages)."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest

from pmaps.analysis.footprint import FIGURES, Facts, figures, vma_columns
from pmaps.kernel.maps import Vma
from pmaps.model import Known, Pages, Snapshot
from pmaps.model.ranges import batch_ranges
from pmaps.model.snapshot import vma_index
from pmaps.render.pmaps import RangeWriter, ViewOptions

U64 = np.uint64
KNOWN = Known(pfn=True, flags=True, count=True)


def layout(seed: int) -> Snapshot:
    """Adjacent and separate VMAs, runs of equal state that touch across VMA boundaries."""
    rng = np.random.default_rng(seed)
    vmas, vpn = [], []
    page = 0x1000
    for _ in range(40):
        n = int(rng.integers(1, 40))
        if rng.random() < 0.5:
            page += int(rng.integers(1, 5))  # a gap; otherwise adjacent to the previous VMA
        vmas.append(Vma(page << 12, (page + n) << 12, "rw-p", 0, "00:00", 0, ""))
        vpn.extend(p for p in range(page, page + n) if rng.random() < 0.8)
        page += n
    v = np.array(vpn, dtype=U64)
    pfn = np.arange(len(v), dtype=U64) + U64(0x100)
    pfn[rng.random(len(v)) < 0.1] += U64(7)  # breaks of physical contiguity
    pm = (U64(1) << U64(63)) | pfn
    kflags = np.where(rng.random(len(v)) < 0.3, U64(1 << 5), U64(1 << 11))  # lru / mmap mixes
    kcount = rng.integers(1, 3, len(v)).astype(U64)
    pages = Pages(v, pm, np.zeros(len(v), dtype=np.uint16), kflags, kcount)
    return Snapshot(1, "t", vmas, pages, KNOWN)


class Cut:
    """A PageSource over a snapshot whose groups() are cut at the given page positions."""

    def __init__(self, snap: Snapshot, cuts: list[int]) -> None:
        self.snap, self.cuts = snap, cuts
        self.pid, self.comm, self.vmas, self.known = snap.pid, snap.comm, snap.vmas, snap.known

    def chunks(self):
        return self.snap.chunks()

    def groups(self):
        edges = [0, *self.cuts, len(self.snap.pages)]
        for a, b in itertools.pairwise(edges):
            if b > a:
                yield vma_index(self.snap.pages.take(slice(a, b)), self.vmas)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("opts", [ViewOptions(), ViewOptions(full=True), ViewOptions(with_pfn=True)])
def test_batches_cut_anywhere(seed, opts):
    snap = layout(seed)
    n = len(snap.pages)
    rng = np.random.default_rng(seed + 100)
    expect = io.StringIO()
    RangeWriter(expect, "text", opts).process(1, "t", snap.vmas, snap.chunks(), lambda: KNOWN, header=False)
    # The per-VMA footprint reference: each VMA's pages through the engine alone.
    ref = []
    for lo, hi in snap.bounds().tolist():
        t = figures(Facts.of_pages(snap.pages.take(slice(lo, hi)), KNOWN), FIGURES).total()
        ref.append({k: int(t.get(k, 0)) for k in FIGURES})
    for cuts in ([], [1], list(range(1, n)), sorted(rng.choice(np.arange(1, n), 7, replace=False).tolist())):
        src = Cut(snap, cuts)
        got = io.StringIO()
        RangeWriter(got, "text", opts).process(1, "t", snap.vmas, src.chunks(), lambda: KNOWN, header=False,
                                              groups=src.groups())
        assert got.getvalue() == expect.getvalue(), cuts
        # Ranges cover every page exactly once, VMA by VMA.
        total = sum(int(r.count.sum()) for _, r, _ in batch_ranges(src.groups(), lambda: KNOWN, full=True,
                                                                     with_pfn=False, swap=True))
        assert total == n
        cols, _ = vma_columns(src, FIGURES)
        assert [{k: int(cols[k][i]) for k in FIGURES} for i in range(len(snap.vmas))] == ref


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
@pytest.mark.parametrize("opts", [ViewOptions(with_pfn=True), ViewOptions()])
def test_machine_formats_cut_anywhere(fmt, opts):
    snap = layout(7)
    n = len(snap.pages)
    expect = io.StringIO()
    RangeWriter(expect, fmt, opts).process(1, "t", snap.vmas, snap.chunks(), lambda: KNOWN, header=False)
    for cuts in ([], [3], list(range(1, n, 2))):
        src = Cut(snap, cuts)
        got = io.StringIO()
        RangeWriter(got, fmt, opts).process(1, "t", snap.vmas, src.chunks(), lambda: KNOWN, header=False,
                                           groups=src.groups())
        assert got.getvalue() == expect.getvalue(), cuts


def test_vma_index_drops_pages_outside_every_vma():
    vmas = [Vma(0x10 << 12, 0x14 << 12, "rw-p", 0, "00:00", 0, ""), Vma(0x14 << 12, 0x16 << 12, "rw-p", 0, "00:00", 0, ""),
            Vma(0x20 << 12, 0x22 << 12, "rw-p", 0, "00:00", 0, "")]
    vpn = np.array([0x8, 0x10, 0x13, 0x14, 0x15, 0x16, 0x1f, 0x21, 0x30], dtype=U64)
    pages = Pages(vpn, vpn.copy(), np.zeros(len(vpn), dtype=np.uint16))
    kept, g = vma_index(pages, vmas)
    assert kept.vpn.tolist() == [0x10, 0x13, 0x14, 0x15, 0x21] and g.tolist() == [0, 0, 1, 1, 2]
    kept, g = vma_index(pages.take(slice(1, 5)), vmas)  # all inside: the same pages back
    assert kept.vpn.tolist() == [0x10, 0x13, 0x14, 0x15] and g.tolist() == [0, 0, 1, 1]


def test_fmt_bytes_signs():
    from pmaps.render.units import fmt_bytes

    assert [fmt_bytes(x) for x in (0, 5, -5, 1536, -21564639, 5 << 30, None)] == \
        ["0", "5", "-5", "1.5K", "-21M", "5.0G", "?"]
    assert fmt_bytes(-2048, "k") == "-2" and fmt_bytes(-2048, "bytes") == "-2048"


def test_json_document_held_in_memory_or_in_a_file(monkeypatch):
    """A process's JSON document is held back until whole: in memory, or past SPOOL_BYTES in a
    temporary file; the text written is the same either way."""
    import pmaps.render.pmaps as rp
    from pmaps.render import write

    snaps = [layout(3), layout(4)]
    docs = []
    for limit in (1 << 30, 100):
        monkeypatch.setattr(rp, "SPOOL_BYTES", limit)
        out = io.StringIO()
        write(rp.PageRangesView(snaps, ViewOptions(with_pfn=True)), out, "json")
        docs.append(out.getvalue())
    assert docs[0] == docs[1] and docs[0].count('"pid":1,') == 2


@pytest.mark.parametrize("odd", [False, True])
def test_summary_rows_as_one_matrix_match_write_table(odd):
    """--summary's text of many VMAs (a matrix of bytes, paths put in by Python) is write_table's
    layout: addresses of 12 to 16 digits and 0, named and unnamed VMAs, a path's trailing blanks cut,
    an unknown column, unit suffixes; non-ASCII perms (a snapshot file's) take the cell by cell path."""
    from pmaps.render.summary import COLS, KEYS, ProcessSummary, SummaryView
    from pmaps.render.table import write_table
    from pmaps.render.units import fmt_bytes, unit_header

    rng = np.random.default_rng(5)
    vmas = [Vma(0, 0x1000, "r--p", 0, "00:00", 0, "")]
    for i in range(1, 150):
        start = (0xFFFFFFFFFF600000 if i == 149 else 0x1000 * (i * 3) << (4 * int(rng.integers(0, 6))))
        path = ["", "/lib/x.so", "[heap]", "/tmp/a b  ", "/ü"][i % 5] if i % 3 else ""
        perms = ("rwxä" if odd and i == 7 else ["rw-p", "r--p", "r-xs"][i % 3])
        vmas.append(Vma(start, start + 0x2000, perms, 0, "00:00", 0, path))
    vmas.sort()
    raw = {k: rng.integers(0, 5, len(vmas)).astype(np.int64) * 4096 for k in KEYS}
    for unit in ("human", "k", "bytes"):
        v = ProcessSummary.build(1, "t", vmas, raw, {"swap_pss", "dirty"})
        got = io.StringIO()
        SummaryView([v]).text(got, unit)
        header = ["address", "perms", *(c.upper() + unit_header(unit) for c in COLS), "path"]
        total = ["total", "", *(fmt_bytes(v.total[c], unit) for c in COLS), ""]
        rows = [[f"{x.start:012x}", x.perms, *(fmt_bytes(None if v.cols[c] is None else int(v.cols[c][i]), unit)
                                               for c in COLS), x.path] for i, x in enumerate(vmas)]
        want = io.StringIO()
        write_table(want, header, rows, left=2, footer=[total], text_last=True)
        assert got.getvalue() == want.getvalue()


def test_json_openings_of_named_and_plain_vmas():
    """JSON/NDJSON openings made once per (perms, dev) for VMAs with no offset, inode or path, one
    by one for the others; a comm with '%' in it is text, not a format (NDJSON repeats it per VMA)."""
    snap = layout(2)
    odd = [v._replace(offset=4096, inode=7, path="/lib/a%sb") if i % 3 == 0 else
           v._replace(perms="r--s", dev="08:01") if i % 3 == 1 else v for i, v in enumerate(snap.vmas)]
    snap = Snapshot(1, "a%sb%d", odd, snap.pages, KNOWN)
    for fmt in ("json", "ndjson"):
        expect = io.StringIO()
        RangeWriter(expect, fmt, ViewOptions()).process(1, snap.comm, snap.vmas, snap.chunks(), lambda: KNOWN,
                                                        header=False)
        got = io.StringIO()
        RangeWriter(got, fmt, ViewOptions()).process(1, snap.comm, snap.vmas, snap.chunks(), lambda: KNOWN,
                                                     header=False, groups=snap.groups())
        assert got.getvalue() == expect.getvalue()
        assert '"comm":"a%sb%d"' in got.getvalue()


def test_rows_text_numbers_and_texts():
    """textrows.rows_text (the JSON writer's rows, made by numpy) is the Python text of each
    row: decimal numbers at every digit count up to 2**64 - 1, hidden ones, text pieces of
    different lengths (some empty) chosen per row, and spliced texts of any content."""
    from pmaps.textrows import rows_text

    rng = np.random.default_rng(11)
    edges = [0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 10_001, 99_999_999, 100_000_000, 2**53 + 1,
             10**19 - 1, 10**19, 2**64 - 1]
    v = np.concatenate([np.array(edges, dtype=U64),
                        rng.integers(0, 2**63, 500, dtype=U64) >> rng.integers(0, 64, 500).astype(U64)])
    n = len(v)
    shown = rng.random(n) < 0.7
    texts = ['{"addr":', "", ',"x":', "ab"]
    pick = rng.integers(0, len(texts), n)
    spliced = [["", "\x01", 'q"\\', "\n", "é", "\x00"][i % 6] * (i % 3) for i in range(n)]
    w = v[::-1].copy()
    got = rows_text([("text", texts, pick), ("number", v, None), ("text", [","], None), ("number", w, shown),
                     ("splice", spliced, None), ("text", ["}", "]}\n"], (np.arange(n) % 2))], n)
    want = "".join(f"{texts[p]}{int(a)},{int(b) if s else ''}{t}{'}' if i % 2 == 0 else ']}' + chr(10)}"
                   for i, (p, a, b, s, t) in enumerate(zip(pick.tolist(), v, w, shown.tolist(), spliced)))
    assert got == want
    assert rows_text([("number", v[:0], None)], 0) == ""
    with pytest.raises(ValueError):
        rows_text([("text", ["a\x01"], None)], 1)  # the mark in a text piece would be taken for a splice


HOSTILE = ['/tmp/a"b', "/tmp/back\\slash", "/tmp/ctl\x01\x1b[31m\x7f", "/tmp/new\nline", "/tmp/bad\udcff\udcfe",
           "/tmp/%s%d%%", "/tmp/ünï\u202e", "/tmp/\ud800x", "[anon:\t\"]", " lead and trail  "]


@pytest.mark.parametrize("opts", [ViewOptions(), ViewOptions(with_pfn=True),
                                  ViewOptions(cgroup_names={0x20: '/a"b\\c\n', 0x21: "/ok"})])
def test_json_batches_hostile_names(opts):
    """Named VMAs whose paths (anyone's text, not always UTF-8) hold quotes, backslashes, control
    characters, newlines, '%', lone surrogates; a hostile comm: the batch writer's JSON and NDJSON
    are the per-VMA writer's byte for byte, and json.loads gives each path and comm back."""
    import json
    from dataclasses import replace

    snap = layout(5)
    vmas = [v._replace(offset=4096 * i, inode=i, dev="08:01", path=HOSTILE[i % len(HOSTILE)]) if i % 2 else v
            for i, v in enumerate(snap.vmas)]
    cg = np.where(np.arange(len(snap.pages)) % 3 == 0, 0x20, np.where(np.arange(len(snap.pages)) % 3 == 1, 0, 0x21))
    pages = replace(snap.pages, kcgroup=cg.astype(U64)) if opts.cgroup_names else snap.pages
    comm = 'c"\\\n%s\udcff'
    snap = Snapshot(1, comm, vmas, pages, KNOWN)
    for fmt in ("json", "ndjson"):
        expect = io.StringIO()
        RangeWriter(expect, fmt, opts).process(1, comm, snap.vmas, snap.chunks(), lambda: KNOWN, header=False)
        for cuts in ([], [5], list(range(1, len(snap.pages), 3))):
            src = Cut(snap, cuts)
            got = io.StringIO()
            RangeWriter(got, fmt, opts).process(1, comm, snap.vmas, src.chunks(), lambda: KNOWN, header=False,
                                               groups=src.groups())
            assert got.getvalue() == expect.getvalue(), (fmt, cuts)
        text = expect.getvalue()
        assert text.isascii()
        if fmt == "json":
            doc = json.loads(text)
            vs = doc["vmas"]
            assert doc["comm"] == comm
        else:
            vs = [json.loads(line) for line in text.splitlines()]
            assert all(x["comm"] == comm for x in vs)
        assert [x["path"] for x in vs] == [v.path for v in vmas]
        assert sum(r["count"] for x in vs for r in x["ranges"]) == len(snap.pages)
        if opts.cgroup_names:
            # The cgroup paths as the text view shows them (render.table.printable), in JSON too.
            assert {r["cgroup"] for x in vs for r in x["ranges"]} == {None, '/a"b\\c\\x0a', "/ok"}
