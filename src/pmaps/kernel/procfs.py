"""Thin readers of /proc: fetch bytes, translate OS errors once, here.

Every function takes the pid it reads for, so that errors carry it. Decoding lives in
the pure modules beside this one (maps.py, pagemap.py, kpage.py, smaps.py).
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator

from ..errors import (
    AccessDenied,
    KernelThread,
    NoSuchProcess,
    PmapsError,
    ProcessGone,
    ZombieProcess,
)

PROC = "/proc"
PF_KTHREAD = 0x00200000  # include/linux/sched.h; /proc/PID/stat field 9 ("flags")


def proc_path(pid: int | str, name: str) -> str:
    return f"{PROC}/{pid}/{name}"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the comm, or None if the process is gone."""
    try:
        with open(proc_path(pid, "stat"), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')' (proc(5)).
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def process_state(pid: int) -> str | None:
    """The one-letter state (R, S, Z, ...) or None when the pid does not exist."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def is_kernel_thread(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and len(fields) > 6 and (int(fields[6]) & PF_KTHREAD) != 0


def gone_error(pid: int, path: str | None, *, started: bool) -> PmapsError:
    """Choose the right error once a read says ENOENT/ESRCH/EOF (psutil's habit)."""
    state = process_state(pid)
    if state is None:
        if started:
            return ProcessGone(f"process {pid} exited during the scan", pid, path)
        return NoSuchProcess(f"no such process: {pid}", pid, path)
    if state in ("Z", "X"):
        if started:
            # It was alive when the scan began and died in it; not yet reaped by its parent.
            return ProcessGone(f"process {pid} exited during the scan", pid, path)
        return ZombieProcess(f"process {pid} is a zombie: its memory is already gone", pid, path)
    if is_kernel_thread(pid):
        return KernelThread(f"process {pid} is a kernel thread: it has no user memory", pid, path)
    return ProcessGone(f"process {pid} changed while it was read ({path})", pid, path)


@contextlib.contextmanager
def translate(pid: int, path: str, *, started: bool = False) -> Iterator[None]:
    """Turn OSError from reading `path` of `pid` into a PmapsError, chained."""
    try:
        yield
    except PmapsError:
        raise
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ESRCH):
            raise gone_error(pid, path, started=started) from err
        if err.errno in (errno.EACCES, errno.EPERM):
            who = "root (CAP_SYS_ADMIN)" if path.startswith("/proc/kpage") else "the owner or root"
            raise AccessDenied(f"permission denied: {path} (needs {who})", pid, path) from err
        raise PmapsError(f"cannot read {path}: {os.strerror(err.errno or 0)}", pid, path) from err


def read_file(pid: int, name: str, *, started: bool = False) -> bytes:
    """Whole /proc/PID/NAME as bytes: reads of 64 KiB, doubling up to 1 MiB (most of these files
    are a few KiB, and a 1 MiB buffer for each read costs more than the read; top makes five a
    process). os.read, not a file object: a quarter less time on a small file."""
    path = proc_path(pid, name)
    with translate(pid, path, started=started):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            size = 1 << 16
            while True:
                b = os.read(fd, size)
                if not b:
                    break
                chunks.append(b)
                size = min(size * 2, 1 << 20)
        finally:
            os.close(fd)
    return b"".join(chunks)


def read_chunks(pid: int, name: str, *, started: bool = False, size: int = 1 << 20) -> Iterator[bytes]:
    """/proc/PID/NAME as it is read, in chunks of at most `size` bytes cut anywhere: for a caller
    that decodes as it reads rather than holding the whole text. A seq_file read returns a page or
    so (smaps: 13,000 reads for 65,000 VMAs), so a chunk is several reads into one buffer, reused:
    a new `size`-byte object per read cost 40% more than the reads (70 ms for those 13,000)."""
    from .native import load  # the compiled core: its import is a few microseconds

    path = proc_path(pid, name)
    buf = bytearray(size)
    view = memoryview(buf)
    core = load()
    with translate(pid, path, started=started):
        with open(path, "rb", buffering=0) as f:
            if core is not None:
                # A chunk's reads in one call without the GIL: a Python loop took the GIL back
                # after every read, and waited for it while another thread decoded (wss: smaps
                # read in 0.24 s instead of cat's 0.18 at 65,000 VMAs).
                fd, room = f.fileno(), min(size, _READ_ROOM)
                while True:
                    fill = core.fill(fd, buf, 0, room)
                    if fill:
                        yield bytes(view[:fill])
                    if size - fill >= room:  # stopped with room left: EOF
                        return
            fill = 0
            while True:
                n = f.readinto(view[fill:])
                if not n:
                    break
                fill += n
                if size - fill < _READ_ROOM:
                    yield bytes(view[:fill])
                    fill = 0
            if fill:
                yield bytes(view[:fill])


_READ_ROOM = 1 << 12  # a chunk is handed over when less room than this (a page) is left


# -- read-ahead: a command's first read, made while Python still imports ---------------------------
# A command that will read a process starts its first read (maps) on a helper thread before it
# imports numpy and the rest (60-90 ms of the GIL's time): the read waits in the kernel without the
# GIL (the compiled core's fill), so the two overlap. Maps of 65,000 VMAs: 20 ms of the kernel's.
_AHEAD: dict[tuple[int, str], tuple[threading.Thread, list[tuple[tuple[int, int], bytes]]]] = {}


def read_ahead(pid: int, name: str) -> None:
    """Start reading /proc/PID/NAME whole on a helper thread, for take_ahead. Any error is left for
    the caller's own read to meet and report."""
    from .native import load  # here, not on the thread: it runs no import beside the command's own

    load()  # the compiled core, loaded once: read_chunks' reads without the GIL
    got: list[tuple[tuple[int, int], bytes]] = []

    def read() -> None:
        mark = _mm_mark(pid)  # before the read: the process and address space it reads
        if mark is None:
            return
        try:
            got.append((mark, b"".join(read_chunks(pid, name, size=_AHEAD_CHUNK))))
        except PmapsError:
            pass

    t = threading.Thread(target=read, name=f"pmaps-ahead-{name}", daemon=True)
    t.start()
    _AHEAD[(pid, name)] = (t, got)


def take_ahead(pid: int, name: str, start_time: int) -> bytes | None:
    """What read_ahead read of /proc/PID/NAME (waiting for it), once: when it was read from the
    process that has `start_time` (not one given the PID since) and from the address space it has
    now (not the one before an exec, which keeps the start time: the stack's start moves, with
    ASLR), and read without error; else None, and the caller reads as usual."""
    ahead = _AHEAD.pop((pid, name), None)
    if ahead is None:
        return None
    thread, got = ahead
    thread.join()
    if not got or not got[0][1] or got[0][0][0] != start_time or got[0][0] != _mm_mark(pid):
        return None
    return got[0][1]


def _mm_mark(pid: int) -> tuple[int, int] | None:
    """(start time, start of the stack): /proc/PID/stat fields 22 and 28 (proc(5)), which name a
    process and its address space (an exec keeps the start time; with ASLR it moves the stack);
    None when the process is gone or the line is short."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[19]), int(fields[25])
    except (IndexError, ValueError):
        return None


def drop_ahead() -> None:
    """Forget reads ahead that nothing took (a command that ended before it read the process):
    they live for one command, never for a later one in the same interpreter."""
    _AHEAD.clear()


_AHEAD_CHUNK = 1 << 23  # whole maps of 65,000 VMAs (4.6 MB) in one chunk: one GIL hand-back


def read_system(path: str) -> bytes:
    """A whole system file (/sys, /proc/meminfo...)."""
    with translate(0, path):
        with open(path, "rb") as f:
            return f.read()


def open_pagemap(pid: int) -> int:
    path = proc_path(pid, "pagemap")
    with translate(pid, path):
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def open_kpage(name: str) -> int | None:
    """Open /proc/kpageflags, kpagecount or kpagecgroup; None when not readable (not root)."""
    try:
        return os.open(f"{PROC}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def open_path(path: str) -> int | None:
    """Open a system file read-only; None when it is absent or not readable."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def pread_into(fd: int, buf: memoryview, offset: int, pid: int, path: str) -> int:
    """Fill `buf` from `offset`; returns bytes read (short only at EOF)."""
    try:
        done = os.preadv(fd, [buf], offset)
        n = len(buf)
        while 0 < done < n:  # /proc reads may come back short before EOF
            got = os.preadv(fd, [buf[done:]], offset + done)
            if got <= 0:
                break
            done += got
    except OSError:
        with translate(pid, path, started=True):
            raise
    return done


def pread_many(fd: int, jobs: list[tuple[int, memoryview]], path: str) -> None:
    """Fill each (offset, buffer) from fd; short reads leave zeros (past the end of RAM).
    One tight loop: kpageflags lookups make thousands of small reads."""
    preadv = os.preadv
    try:
        for off, view in jobs:
            got = preadv(fd, [view], off)
            if 0 < got < len(view):
                pread_into(fd, view[got:], off + got, 0, path)
    except OSError:
        with translate(0, path, started=True):
            raise


def pread_runs(fd: int, buf: memoryview, offs: list[int], poss: list[int], sizes: list[int], path: str) -> None:
    """Fill buf[pos:pos + size] from fd at each offset; what a short read leaves (past the end of
    RAM) is zeroed, so buf may start uninitialised. One tight loop over plain lists: kpageflags
    lookups make tens of thousands of reads."""
    preadv = os.preadv
    try:
        for off, p, n in zip(offs, poss, sizes):
            view = buf[p:p + n]
            got = preadv(fd, [view], off)
            if got < n:
                if got > 0:
                    got += pread_into(fd, view[got:], off + got, 0, path)
                if got < n:
                    view[got:] = bytes(n - got)
    except OSError:
        with translate(0, path, started=True):
            raise


def list_tasks(pid: int) -> list[int]:
    """Thread ids of a process (/proc/PID/task), sorted."""
    path = proc_path(pid, "task")
    with translate(pid, path, started=True):
        return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def list_pids() -> list[int]:
    return sorted(int(d) for d in os.listdir(PROC) if d.isdigit())


def close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
