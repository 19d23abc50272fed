"""/proc/meminfo (Documentation/filesystems/proc.rst, "meminfo")."""
from __future__ import annotations

from . import procfs

MEMINFO = "/proc/meminfo"


def decode_meminfo(data: bytes) -> dict[str, int]:
    """/proc/meminfo in bytes ("kB" fields) or counts (HugePages_*). Pure."""
    out: dict[str, int] = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if not parts:
            continue
        n = int(parts[0])
        out[key.decode()] = n * 1024 if len(parts) > 1 and parts[1] == b"kB" else n
    return out


def read_meminfo() -> dict[str, int]:
    return decode_meminfo(procfs.read_system(MEMINFO))
