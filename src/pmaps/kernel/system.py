"""Whole-machine readers: process identity (status, cgroup), /proc/meminfo, and /proc/kpageflags
over a PFN range. Readers fetch bytes through procfs (errors translated there); decoders are pure.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import AccessDenied
from . import procfs

KPAGEFLAGS = "/proc/kpageflags"
PHYS_CHUNK = 1 << 20  # PFNs per read: 8 MiB of u64


@dataclass(frozen=True, slots=True)
class Ident:
    """Who a process is, for filtering and grouping."""

    pid: int
    comm: str
    uid: int  # effective uid, as ps(1) shows
    cgroup: str  # cgroup v2 path ("0::" line), else the v1 memory controller's


def decode_status_uid(data: bytes) -> int:
    """Effective uid from /proc/PID/status ("Uid: real effective saved fs", proc(5))."""
    for line in data.splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[2])
    raise ValueError("no Uid line in status")


def decode_cgroup(data: bytes) -> str:
    """The process's cgroup path: the unified (v2) hierarchy's "0::PATH" line, or on a v1/hybrid
    system the memory controller's line (Documentation/admin-guide/cgroup-v2.rst, "/proc/PID/cgroup")."""
    v2 = mem = ""
    for line in data.decode("utf-8", "replace").splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2 = path
        elif "memory" in ctrls.split(","):
            mem = path
    # On a hybrid system the v2 line is "/" while the memory controller lives in v1.
    return mem if mem and v2 in ("", "/") else (v2 or mem or "/")


def decode_meminfo(data: bytes) -> dict[str, int]:
    """/proc/meminfo in bytes ("kB" fields) or counts (HugePages_*)."""
    out: dict[str, int] = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if not parts:
            continue
        n = int(parts[0])
        out[key.decode()] = n * 1024 if len(parts) > 1 and parts[1] == b"kB" else n
    return out


def read_ident(pid: int) -> Ident:
    """comm, euid and cgroup of a process (NoSuchProcess & co. from procfs on a race)."""
    comm = procfs.read_file(pid, "comm").decode("utf-8", "replace").strip()
    uid = decode_status_uid(procfs.read_file(pid, "status"))
    try:
        cg = decode_cgroup(procfs.read_file(pid, "cgroup"))
    except AccessDenied:
        cg = "?"
    return Ident(pid, comm, uid, cg)


def read_meminfo() -> dict[str, int]:
    return decode_meminfo(procfs.read_system("/proc/meminfo"))


def read_smaps_rollup(pid: int) -> bytes:
    return procfs.read_file(pid, "smaps_rollup")


def iter_kpageflags(start: int = 0, end: int | None = None, chunk: int = PHYS_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
    """(first PFN, kpageflags u64 array) chunks over [start, end); end None: to the end of memory.

    Reads past the last PFN are short (fs/proc/page.c kpageflags_read stops at max_pfn), so a
    short read ends the walk. Needs root (the file is 0400): AccessDenied otherwise.
    """
    fd = procfs.open_kpage("kpageflags")
    if fd is None:
        raise AccessDenied(f"permission denied: {KPAGEFLAGS} (needs root (CAP_SYS_ADMIN))", path=KPAGEFLAGS)
    try:
        pfn = start
        while end is None or pfn < end:
            n = chunk if end is None else min(chunk, end - pfn)
            buf = np.zeros(n, dtype="<u8")
            got = procfs.pread_into(fd, memoryview(buf).cast("B"), pfn * 8, 0, KPAGEFLAGS) // 8
            if got:
                yield pfn, buf[:got]
            if got < n:
                return
            pfn += got
    finally:
        procfs.close(fd)
