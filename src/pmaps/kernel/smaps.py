"""/proc/PID/smaps and smaps_rollup (proc.rst): the kernel's own totals; pure decoders, thin readers."""
from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import repeat

import numpy as np

from . import procfs

_HEADER = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ")


def decode_smaps(data: bytes) -> list[dict[str, int]]:
    """One dict per VMA: 'start', 'end' and every 'Field: N kB' in bytes (VmFlags dropped)."""
    out: list[dict[str, int]] = []
    cur: dict[str, int] | None = None
    for line in data.splitlines():
        m = _HEADER.match(line)
        if m:
            cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16)}
            out.append(cur)
            continue
        if cur is None or b":" not in line:
            continue
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == b"kB":
            cur[key.decode()] = int(parts[0]) * 1024
        elif len(parts) == 1 and parts[0].isdigit():
            cur[key.decode()] = int(parts[0])
    return out


# Every VMA's block ends with its VmFlags line (proc.rst; last since Linux 3.8): the next VMA's
# header follows it. Both patterns start with literal text, which re scans for quickly.
_NEXT_START = re.compile(rb"\nVmFlags:[^\n]*\n([0-9a-f]+)-")


def decode_smaps_column(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, bytes) per VMA, in smaps' order (u64, int64), of one 'Name: N kB' field: two scans
    for literal text and no Python per line (65,000 VMAs: 60 ms; decode_smaps takes 2 s). Through
    decode_smaps when the text is not of that shape (a VMA without the field, an old kernel
    without VmFlags), where a VMA without the field counts 0."""
    first = _HEADER.match(data)
    starts = [first.group(1), *re.findall(_NEXT_START, data)] if first is not None else []
    values = re.findall(b"\n" + re.escape(name.encode()) + rb": +(\d+) kB\n", data) if starts else []
    if not starts or len(values) != len(starts) or data.count(b"\nVmFlags:") != len(starts):
        rows = decode_smaps(data)
        return (np.fromiter((r["start"] for r in rows), dtype=np.uint64, count=len(rows)),
                np.fromiter((r.get(name, 0) for r in rows), dtype=np.int64, count=len(rows)))
    return (np.fromiter(map(int, starts, repeat(16)), dtype=np.uint64, count=len(starts)),
            np.array(values).astype(np.int64) * 1024)


_SIZE_LINE = b"\nSize:"  # every VMA's first field (show_smap), the line after its header
_HEADER_LINE = re.compile(rb"\n[0-9a-f]+-[0-9a-f]+ ")
_HEADER_AT = re.compile(rb"([0-9a-f]+)-[0-9a-f]+ ")  # _HEADER at any position (no ^)
# Above this many non-zero fields in a piece, decode_smaps_column's two scans are cheaper than
# looking back for each one's header.
_FEW = 256


def decode_smaps_nonzero(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, bytes) of the VMAs whose 'Name: N kB' field is not 0, in smaps' order (u64, int64):
    decode_smaps_column without its zeros. Two counts of literal text say when all are zero; else
    one scan for the non-zero lines, each one's header found by looking back to its VMA's Size
    line. An idle process's 47 MB of smaps at 65,000 VMAs (Referenced: 26 non-zero) in 1 MiB
    pieces: ~20-30 ms instead of ~120. Through decode_smaps_column when many are non-zero or a
    header is not where it should be (then a few tens of ms more than that decoder alone)."""
    starts, values, _ = decode_smaps_listed(data, name)
    return starts, values


def decode_smaps_listed(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """decode_smaps_nonzero, and how many 'Name:' lines the text holds (zero or not): the number
    of VMAs it lists, as the kernel prints every field for every VMA. A count made anyway, which a
    caller compares with a maps read of the same moment."""
    key = b"\n" + name.encode() + b":"
    # All zero? Each line of the field is the zero line when there are as many of those as of the
    # field: two counts of literal text (fast searches) take half the regex's time.
    first = re.compile(re.escape(key) + rb"( +)(\d+) kB\n").match(data, max(data.find(key), 0))
    many = False
    listed = -1  # not counted (yet)
    if first is not None:
        zero = key + b" " * (len(first.group(1)) + len(first.group(2)) - 1) + b"0 kB\n"
        listed = data.count(key)
        nonzero = listed - data.count(zero)
        if not nonzero:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), listed
        many = nonzero > _FEW
    hits = [] if many else list(re.finditer(re.escape(key) + rb" +0*([1-9]\d*) kB\n", data))
    if not many and len(hits) <= _FEW:
        starts = []
        for m in hits:
            # The VMA's Size line at or before the hit (the hit may be Size itself), and its header
            # on the line before it (or at the start of the text).
            size = data.rfind(_SIZE_LINE, 0, m.start() + len(_SIZE_LINE))
            head = _HEADER_AT.match(data, data.rfind(b"\n", 0, size) + 1) if size >= 0 else None
            if head is None or _HEADER_LINE.search(data, size + 1, m.start()):  # not of one VMA
                break
            starts.append(int(head.group(1), 16))
        else:
            return (np.array(starts, dtype=np.uint64).reshape(-1),
                    np.array([int(m.group(1)) for m in hits], dtype=np.int64).reshape(-1) * 1024,
                    listed if listed >= 0 else data.count(key))
    keys, values = decode_smaps_column(data, name)
    keep = values != 0
    return keys[keep], values[keep], listed if listed >= 0 else data.count(key)


# A "Name:   N kB" line of smaps_rollup, from the newline before it (a literal: fast to find).
_KB_LINE = re.compile(rb"\n(\w+): +(\d+) kB(?=\n)")


def decode_rollup(data: bytes) -> dict[str, int]:
    """smaps_rollup's single block, fields in bytes: 'start', 'end' and every 'Field: N kB'. One
    findall when every line after the header is such a field (what the kernel prints: a quarter of
    decode_smaps' time, which top pays once a process); decode_smaps otherwise."""
    head = _HEADER.match(data)
    if head is not None and data.endswith(b"\n"):
        fields = _KB_LINE.findall(data)
        if len(fields) == data.count(b"\n") - 1:
            out = {"start": int(head.group(1), 16), "end": int(head.group(2), 16)}
            out.update((k.decode(), int(v) * 1024) for k, v in fields)
            return out
    rows = decode_smaps(data)
    return rows[0] if rows else {}


def read_smaps(pid: int, *, started: bool = False) -> list[dict[str, int]]:
    """/proc/PID/smaps, decoded. Costly on a large process: the kernel walks every page table."""
    return decode_smaps(procfs.read_file(pid, "smaps", started=started))


def smaps_pieces(pid: int, *, started: bool = False) -> Iterator[bytes]:
    """/proc/PID/smaps as it is read, about _PIECE bytes at a time, each piece ending after a
    VmFlags line (whole VMAs), undecoded: a caller may read on one thread and decode on another
    (the kernel's walk then never waits for a decode)."""
    pending: list[bytes] = []
    size = 0
    stream = True
    for chunk in procfs.read_chunks(pid, "smaps", started=started):
        pending.append(chunk)
        size += len(chunk)
        if size < _PIECE or not stream:
            continue
        data = b"".join(pending) if len(pending) > 1 else pending[0]
        cut = data.rfind(b"\nVmFlags:")
        end = data.find(b"\n", cut + 1) if cut >= 0 else -1
        if end < 0:  # no VmFlags (before Linux 3.8): decoded whole at the end
            pending, stream = [data], False
            continue
        yield data[:end + 1]
        pending = [data[end + 1:]]
        size = len(pending[0])
    rest = b"".join(pending)
    if rest:
        yield rest


_PIECE = 1 << 20


def read_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup, decoded."""
    return decode_rollup(procfs.read_file(pid, "smaps_rollup"))
