"""The compiled core's maps decoder (_kpage.c maps_columns, via maps._core_table) against the numpy
one (maps._fast_table): on the maps of every process on the machine and of children built for it
(many VMAs, named ones, files), on every shape of line _fast_table refuses, on fields of the longest
length it takes and one more, and on seeded random texts: both None, or the same columns, positions,
text and bytes. Skipped where the core is not built."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
from memchild import MANY_VMAS, MemChild

from pmaps.kernel import maps, native
from pmaps.kernel.maps import VmaTable, decode_maps, decode_table

CORE: native.Core | None
try:
    from pmaps.kernel import _kpage as CORE
except ImportError:
    CORE = None
pytestmark = pytest.mark.skipif(CORE is None, reason="the compiled core is not built")


def both(data: bytes) -> tuple[VmaTable | None, VmaTable | None]:
    """The numpy decoder's table and the core's, of the same bytes (asserted alike, or both None)."""
    assert CORE is not None
    want, got = maps._fast_table(data), maps._core_table(data, CORE)
    if want is None or got is None:
        assert want is None and got is None, (want, got)
        return want, got
    for name in ("start", "end", "offset", "inode", "_pos", "_buf"):
        a, b = getattr(want, name), getattr(got, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert got._pos is not None and got._pos.flags.c_contiguous and got.start.flags.c_contiguous
    assert got.start.flags.writeable and got._pos.flags.writeable  # as numpy's own arrays
    assert want._text == got._text
    return want, got


def line(start: str = "7f0000001000", end: str = "7f0000002000", perms: str = "rw-p", offset: str = "00000000",
         dev: str = "00:00", inode: str = "0", path: str = "", pad: str = " ") -> str:
    """A maps line from its fields as text (any of them malformed at will); pad goes between the
    inode and the path, or ends an unnamed line as the kernel's does."""
    return f"{start}-{end} {perms} {offset} {dev} {inode}{pad}{path}"


def text(*lines: str, nl: bool = True) -> bytes:
    return ("\n".join(lines) + ("\n" if nl else "")).encode("ascii")


# -- real maps -------------------------------------------------------------------------------------


def test_same_on_every_process():
    """The maps of every process readable now (the kernel's own lines, named and not)."""
    seen = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data and data.isascii():  # (decode_table sends any other text to the slow path before either)
            want, _ = both(data)
            assert want is not None, pid  # the kernel's lines all take the fast path
            seen += 1
    assert seen >= 2


def test_same_on_children():
    """A memchild of anonymous VMAs, files (named: paths), THP and guards, and a process
    of 20,000 VMAs: the same tables, and decode_table gives decode_maps' VMAs both ways."""
    specs = ["a:anon:64K", "f:file:256K", "c:cow:64K", "t:thp:4M", "r:reserve:1G", "z:zero:1M"]
    with MemChild(specs) as mc:
        with open(f"/proc/{mc.pid}/maps", "rb") as f:
            small = f.read()
    p = subprocess.Popen([sys.executable, "-c", MANY_VMAS, "20002"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None and int(p.stdout.readline()) >= 20002
        with open(f"/proc/{p.pid}/maps", "rb") as f:
            many = f.read()
    finally:
        p.kill()
        p.wait()
    assert b"/" in small and many.count(b"\n") > 20000
    for data in (small, many):
        assert both(data)[1] is not None
        assert decode_table(data).vmas == decode_maps(data) == maps._decode_maps(data)


def test_decode_table_runs_the_core_and_pure_alike(monkeypatch):
    """decode_table takes the core when it is built (a call seen), numpy's path with PMAPS_PURE:
    the same VMAs, and the same slow path where neither takes the text."""
    calls = []

    class Spy:
        def maps_columns(self, data: object) -> object:
            calls.append(len(bytes(data)))  # type: ignore[call-overload]
            assert CORE is not None
            return CORE.maps_columns(data)

    with open("/proc/self/maps", "rb") as f:
        data = f.read()
    monkeypatch.setattr(maps, "load_core", lambda: Spy())
    fast = decode_table(data)
    assert calls == [len(data)] and fast._pos is not None
    odd = data + "/ä\n".encode()  # a line that does not parse: decode_maps' error, both ways
    with pytest.raises(maps.MapsFormatError):
        decode_table(odd)
    monkeypatch.setattr(maps, "load_core", native.load)
    monkeypatch.setenv(native.PURE_ENV, "1")
    pure = decode_table(data)
    assert pure.vmas == fast.vmas and np.array_equal(pure._pos, fast._pos)
    with pytest.raises(maps.MapsFormatError):
        decode_table(odd)


# -- synthetic texts ------------------------------------------------------------------------------
GOOD = [line(), line(inode="1234567", dev="fd:01", path="/usr/lib/libc.so.6", pad=" " * 26), line(pad=""),
        line(path="[anon:a b  c]", pad=" " * 30), line(path="/tmp/a\\012b (deleted)", pad=" "),
        line(path="   leading blanks", pad=" "), line(path="trailing blanks   ", pad=" "),
        line(start="0", end="1", offset="0", perms="r", dev="x", inode="0")]


@pytest.mark.parametrize("nl", [True, False], ids=["newline", "no-newline"])
def test_good_shapes(nl):
    """Lines the fast path takes: paths with blanks and escapes, no blank after an unnamed inode, one
    character fields; with and without the last newline."""
    for i in range(len(GOOD)):
        want, _ = both(text(*GOOD[i:], *GOOD[:i], nl=nl))
        assert want is not None and len(want) == len(GOOD)
    want, _ = both(text(GOOD[1], nl=nl))
    assert want is not None and want.path == ["/usr/lib/libc.so.6"]


REFUSED = {
    "empty": b"", "one newline": b"\n", "blank line": text(GOOD[0], "", GOOD[1]),
    "blank last line": text(GOOD[0], "") + b"\n", "no dash": text(line().replace("-", "+", 1)),
    "dash after a blank": text("7f0000001000 7f0000002000-rw-p 00000000 00:00 0"),
    "empty start": text(line(start="")), "empty end": text(line(end="")), "empty offset": text(line(offset="")),
    "empty inode": text(line(inode="")), "empty perms": text(line(perms="")), "empty dev": text(line(dev="")),
    "upper-case hex": text(line(start="7F0000001000")), "hex inode": text(line(inode="12a")),
    "negative inode": text(line(inode="-1")), "blank first": text(" " + line()),
    "two dashes": text(line(end="7f-00")), "three fields": text("7f0000001000-7f0000002000 rw-p 00000000"),
    "four fields": text("7f0000001000-7f0000002000 rw-p 00000000 00:00"),
    "tab for a blank": text(line().replace(" ", "\t", 1)), "a NUL in offset": text(line(offset="00\x0000")),
    "two blanks after end": text(line(end="7f0000002000 ")), "only blanks": b"    \n",
    "inode then junk": text(line(inode="12x", path="/a")), "a CR": text(line(inode="0\r")),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_shapes(name):
    """Each case where _fast_table returns None (the slow path decides), alone and among good lines."""
    data = REFUSED[name]
    assert both(data) == (None, None)
    if data:
        assert both(text(*GOOD) + data + text(*GOOD)) == (None, None)


@pytest.mark.parametrize("field,longest,one_more", [
    ("start", "f" * 16, "0" * 17), ("end", "ffffffffffffffff", "1" + "0" * 16),
    ("offset", "0123456789abcdef", "0" * 17), ("inode", "9" * 19, "0" * 20),
    ("inode", "18446744073709551615"[:19], "1" * 20)])
def test_longest_fields_and_one_more(field, longest, one_more):
    """16 hex digits (a u64), 19 decimal ones (read_digits' window): taken, exactly; one more: None."""
    want, _ = both(text(GOOD[0], line(**{field: longest}), GOOD[1]))
    assert want is not None and int(getattr(want, field)[1]) == int(longest, 10 if field == "inode" else 16)
    assert both(text(GOOD[0], line(**{field: one_more}), GOOD[1])) == (None, None)


def test_huge_inputs():
    """A quarter of a million lines (20 MB), and a line with a path of a megabyte."""
    lines = [line(f"{0x10000 * i:x}", f"{0x10000 * i + 0x1000:x}", inode=str(i * 977), pad=" " * (i % 3),
                  path=["", "/usr/lib/x.so", "[stack]"][i % 3]) for i in range(250_000)]
    want, _ = both(text(*lines))
    assert want is not None and len(want) == 250_000 and int(want.inode[-1]) == 249_999 * 977
    want, _ = both(text(GOOD[0], line(path="/" + "p" * (1 << 20)), GOOD[1], nl=False))
    assert want is not None and len(want.path[1]) == 1 + (1 << 20)


def _mutate(rng: random.Random, data: bytearray) -> None:
    alphabet = b" -0123456789abcdefABx:/[]\n\t\0\\"
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.4 and at < len(data):
            data[at] = rng.choice(alphabet)
        elif op < 0.7:
            data[at:at] = bytes(rng.choices(alphabet, k=rng.randint(1, 3)))
        elif at < len(data):
            del data[at: at + rng.randint(1, 3)]


def test_fuzz_same_as_numpy():
    """Seeded random texts: good lines of random field lengths, then bytes changed, added or cut. Both
    None or the same table, every time; enough of each kind that both answers are tried."""
    rng = random.Random(10)
    taken = refused = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randint(1, 6)):
            lines.append(line(f"{rng.getrandbits(rng.randint(1, 64)):x}".zfill(rng.randint(1, 12)),
                              f"{rng.getrandbits(rng.randint(1, 64)):x}", rng.choice(["rw-p", "r--s", "-", "rwxp"]),
                              f"{rng.getrandbits(rng.randint(1, 64)):x}", rng.choice(["00:00", "fd:01", "0", ":"]),
                              str(rng.getrandbits(rng.randint(1, 63))), rng.choice(["", "/a b", "[heap]", " x "]),
                              " " * rng.randint(0, 3)))
        data = bytearray(text(*lines, nl=rng.random() < 0.8))
        if rng.random() < 0.7:
            _mutate(rng, data)
        want, _ = both(bytes(data))
        taken += want is not None
        refused += want is None
    assert taken > 500 and refused > 500


# -- hostile arguments ----------------------------------------------------------------------------
def test_refuses_what_is_not_a_buffer():
    assert CORE is not None
    for bad in (None, 12, "7f-80 rw-p 0 00:00 0\n", [1, 2]):
        with pytest.raises(TypeError):
            CORE.maps_columns(bad)
    with pytest.raises(BufferError):
        CORE.maps_columns(memoryview(text(*GOOD))[::2])  # not contiguous
    got = CORE.maps_columns(memoryview(bytearray(text(*GOOD))))
    assert got is not None and len(got[0]) == 32 * len(GOOD) and len(got[1]) == 64 * len(GOOD)


def test_survives_the_text_changing_under_it():
    """Another thread writing to the text (a bytearray) while the core reads it without the GIL:
    None or tables of the size counted, never a crash (every write bounded by the lines counted)."""
    assert CORE is not None
    base = text(*[line(f"{0x1000 * i:x}", f"{0x1000 * i + 1:x}", path="/x" * (i % 4)) for i in range(100_000)])
    buf = bytearray(base)
    stop = threading.Event()

    def scribble() -> None:
        r = random.Random(3)
        while not stop.is_set():
            at = r.randrange(len(buf) - 8)
            buf[at: at + 8] = bytes(r.choices(b" -\n0a", k=8))

    t = threading.Thread(target=scribble)
    t.start()
    try:
        for _ in range(30):
            got = CORE.maps_columns(buf)
            if got is not None:
                assert len(got[1]) == 2 * len(got[0])
    finally:
        stop.set()
        t.join()
