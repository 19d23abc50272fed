"""/proc/PID/smaps and smaps_rollup (proc.rst): the kernel's own totals; pure decoders, thin readers."""
from __future__ import annotations

import re

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


def decode_smaps_field(data: bytes, name: str) -> dict[int, int]:
    """VMA start -> one 'Name: N kB' field of each VMA, in bytes: two scans for literal text and
    no Python per line (65,000 VMAs: 60 ms; decode_smaps takes 2 s). Through decode_smaps when the
    text is not of that shape (a VMA without the field, an old kernel without VmFlags)."""
    first = _HEADER.match(data)
    if first is None:
        return {r["start"]: r.get(name, 0) for r in decode_smaps(data)}
    starts = [first.group(1), *re.findall(_NEXT_START, data)]
    values = re.findall(b"\n" + re.escape(name.encode()) + rb": +(\d+) kB\n", data)
    if len(values) != len(starts) or data.count(b"\nVmFlags:") != len(starts):
        return {r["start"]: r.get(name, 0) for r in decode_smaps(data)}
    return dict(zip(map(int, starts, [16] * len(starts)), (int(v) * 1024 for v in values)))


def decode_rollup(data: bytes) -> dict[str, int]:
    """smaps_rollup's single block, fields in bytes."""
    rows = decode_smaps(data)
    return rows[0] if rows else {}


def read_smaps(pid: int, *, started: bool = False) -> list[dict[str, int]]:
    """/proc/PID/smaps, decoded. Costly on a large process: the kernel walks every page table."""
    return decode_smaps(procfs.read_file(pid, "smaps", started=started))


def read_smaps_field(pid: int, name: str, *, started: bool = False) -> dict[int, int]:
    """VMA start -> one field of /proc/PID/smaps in bytes (decode_smaps_field), decoded about a
    megabyte at a time as it is read, each piece ending after a VmFlags line: 65,000 VMAs are 47 MB
    of smaps, which held whole (and joined) cost twice that. (A read returns a few VMAs: smaps'
    seq_file buffer is a page.)"""
    out: dict[int, int] = {}
    pending: list[bytes] = []
    size = 0
    stream = True
    for chunk in procfs.read_chunks(pid, "smaps", started=started):
        pending.append(chunk)
        size += len(chunk)
        if size < _PIECE or not stream:
            continue
        data = b"".join(pending)
        cut = data.rfind(b"\nVmFlags:")
        end = data.find(b"\n", cut + 1) if cut >= 0 else -1
        if end < 0:  # no VmFlags (before Linux 3.8): decoded whole at the end
            pending, stream = [data], False
            continue
        out.update(decode_smaps_field(data[:end + 1], name))
        pending = [data[end + 1:]]
        size = len(pending[0])
    rest = b"".join(pending)
    if rest:
        out.update(decode_smaps_field(rest, name))
    return out


_PIECE = 1 << 20


def read_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup, decoded."""
    return decode_rollup(procfs.read_file(pid, "smaps_rollup"))
