"""Who a process is: /proc/PID/comm, status (uid) and cgroup, decoded into an Ident.

Readers fetch bytes through procfs (errors translated there); decoders are pure.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import AccessDenied, PmapsError
from . import procfs
from .cgroup import decode_cgroup


@dataclass(frozen=True, slots=True)
class Ident:
    """Who a process is, for filtering and grouping."""

    pid: int
    comm: str
    uid: int  # effective uid, as ps(1) shows
    cgroup: str  # cgroup v2 path ("0::" line), else the v1 memory controller's


def decode_status_uid(data: bytes) -> int:
    """Effective uid from /proc/PID/status ("Uid: real effective saved fs", proc(5))."""
    rest = _line_after(data, b"Uid:")
    if rest is None:
        raise ValueError("no Uid line in status")
    return int(rest.split()[1])


def _line_after(data: bytes, key: bytes) -> bytes | None:
    """The rest of the status line that starts with key (not the first line: Name), None if none."""
    at = data.find(b"\n" + key)
    if at < 0:
        return None
    end = data.find(b"\n", at + 1)
    return data[at + 1 + len(key): end if end >= 0 else len(data)]


def decode_comm(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


def read_comm(pid: int, *, started: bool = False) -> str:
    return decode_comm(procfs.read_file(pid, "comm", started=started))


def decode_start_time(data: bytes) -> int:
    """Field 22 of /proc/PID/stat, the start time in clock ticks since boot (proc(5)). With the
    PID it names a process: a PID is reused only after its process is gone, by one that started
    later. comm (field 2) may hold spaces and parentheses: count after the last ')'."""
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        raise ValueError("short stat line")
    return int(fields[19])


def read_start_time(pid: int, *, started: bool = False) -> int:
    return decode_start_time(procfs.read_file(pid, "stat", started=started))


def read_ident(pid: int) -> Ident:
    """comm, euid and cgroup of a process (NoSuchProcess & co. from procfs on a race)."""
    return read_ident_rss(pid)[0]


def read_ident_rss(pid: int) -> tuple[Ident, int]:
    """read_ident, and VmRSS in bytes from the same status read (0 for a process without an mm).
    status takes no mmap_lock: its RSS comes from the mm's counters (fs/proc/task_mmu.c task_mem)."""
    comm = read_comm(pid)
    status = procfs.read_file(pid, "status")
    return Ident(pid, comm, decode_status_uid(status), _read_cgroup(pid)), decode_status_field(status, "VmRSS")


def read_ident_status(pid: int) -> tuple[Ident, dict[str, int]]:
    """read_ident, and the status "kB" fields in bytes (decode_status) from the same read."""
    comm = read_comm(pid)
    status = procfs.read_file(pid, "status")
    return Ident(pid, comm, decode_status_uid(status), _read_cgroup(pid)), decode_status(status)


def _read_cgroup(pid: int) -> str:
    try:
        return decode_cgroup(procfs.read_file(pid, "cgroup"))
    except AccessDenied:
        return "?"


def decode_status_field(data: bytes, name: str) -> int:
    """One "Name: N kB" field of /proc/PID/status in bytes, 0 when absent (what decode_status gives
    for it, without splitting every line: top reads the RSS of every process). Pure."""
    rest = _line_after(data, name.encode() + b":")
    parts = rest.split() if rest is not None else []
    return int(parts[0]) * 1024 if len(parts) == 2 and parts[1] == b"kB" and parts[0].isdigit() else 0


def decode_status(data: bytes) -> dict[str, int]:
    """/proc/PID/status "Key: N kB" fields in bytes (VmRSS, RssAnon, RssFile, RssShmem, VmSwap...). Pure."""
    out: dict[str, int] = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == b"kB" and parts[0].isdigit():
            out[key.decode()] = int(parts[0]) * 1024
    return out


def read_status(pid: int) -> dict[str, int]:
    return decode_status(procfs.read_file(pid, "status"))


# -- has a process's memory changed? (the exporter's reuse of unchanged processes) -------
def decode_stat_mm(data: bytes) -> tuple[int, ...]:
    """From /proc/PID/stat (proc(5), whole-process figures): minflt (10), majflt (12), utime (14),
    stime (15), num_threads (20), starttime (22), vsize (23), rss (24). Pure."""
    f = data[data.rfind(b")") + 2 :].split()  # f[0] is field 3
    if len(f) < 22:
        raise ValueError("short stat line")
    return tuple(int(f[i - 3]) for i in (10, 12, 14, 15, 20, 22, 23, 24))


def decode_schedstat(data: bytes) -> int:
    """/proc/PID/task/TID/schedstat's first field: the nanoseconds the thread has run
    (se.sum_exec_runtime; Documentation/scheduler/sched-stats.rst). Pure."""
    return int(data.split()[0])


# /proc/PID/ksm_merging_pages (Linux 6.1+, CONFIG_KSM): how many of a process's pages ksmd has
# merged. In the change key, ksmd merging a still process's page shows in that process itself, so
# the machine-wide KSM counters (which move at every ksmd pass) need not gate reuse (vmstat).
KSM_PER_PROCESS = os.path.exists("/proc/self/ksm_merging_pages")


def read_mm_key(pid: int) -> tuple[int, ...] | None:
    """What changes whenever the process changes its own memory: its stat and statm counters, its
    threads, and the nanoseconds each has run (a thread that has not run since cannot have faulted,
    mapped, unmapped or advised anything; faults, RSS and VM size catch what others do to it: GUP
    writes, userfaultfd copies), and how many of its pages KSM merged. None when it cannot be told
    (no schedstat: CONFIG_SCHED_INFO off, or a thread came or went meanwhile): the process is then
    read afresh."""
    try:
        stat = procfs.read_file(pid, "stat")
        statm = procfs.read_file(pid, "statm")
        tids = procfs.list_tasks(pid)
        run = [decode_schedstat(procfs.read_file(pid, f"task/{t}/schedstat")) for t in tids]
        ksm = (int(procfs.read_file(pid, "ksm_merging_pages")),) if KSM_PER_PROCESS else ()
    except (PmapsError, ValueError, IndexError):
        return None
    return (*decode_stat_mm(stat), *(int(x) for x in statm.split()), *tids, *run, *ksm)
