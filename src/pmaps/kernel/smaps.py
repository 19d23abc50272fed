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


def decode_rollup(data: bytes) -> dict[str, int]:
    """smaps_rollup's single block, fields in bytes."""
    rows = decode_smaps(data)
    return rows[0] if rows else {}


def read_smaps(pid: int, *, started: bool = False) -> list[dict[str, int]]:
    """/proc/PID/smaps, decoded. Costly on a large process: the kernel walks every page table."""
    return decode_smaps(procfs.read_file(pid, "smaps", started=started))


def read_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup, decoded."""
    return decode_rollup(procfs.read_file(pid, "smaps_rollup"))
