"""The page cache of files: cachestat(2), mincore(2) and the walk over paths that finds them.

cachestat (Linux 6.5, man 2 cachestat) counts a file's cached, dirty, writeback, evicted and
recently evicted pages without mapping it; where it is missing (ENOSYS) mincore on a read-only
mapping gives the resident pages only (what vmtouch and util-linux fincore 2.38 do).
Nothing here reads file data: opening and mapping a file does not bring its pages in.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import stat as st
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

# numpy (and numeric, which imports it), procfs and dataclasses are imported where pages are
# handled: the walk and cachestat do without, which keeps `pmaps files` starting fast.
PAGE_SIZE = 4096  # numeric.PAGE_SIZE: pmaps reads 4 KiB pages only

NR_CACHESTAT = 451  # x86-64, arm64 and the generic syscall table alike (Linux 6.5)
MADV_POPULATE_READ = 22  # Linux 5.14, include/uapi/asm-generic/mman-common.h

_libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded (find_library runs ldconfig)
_libc.syscall.restype = ctypes.c_long
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.mincore.restype = ctypes.c_int
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]  # len 0: to the end of the file


class _Cachestat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "writeback", "evicted", "recently_evicted")]


_COUNTS = struct.Struct("=5Q")  # struct cachestat as bytes: one unpack, not five ctypes attribute reads


class CacheStat(NamedTuple):
    """cachestat's counts, in pages. With only mincore, every count but `cache` is None."""

    cache: int
    dirty: int | None = None
    writeback: int | None = None
    evicted: int | None = None
    recently_evicted: int | None = None


class Cachestat:
    """cachestat(2) with its argument buffers made once (a walk calls it per file): one ctypes
    call of syscall(2) with ready-made arguments, the counts unpacked from the buffer at once."""

    def __init__(self) -> None:
        self._rng, self._whole, self._cs = _Range(0, 0), _Range(0, 0), _Cachestat()
        self._nr, self._flags = ctypes.c_long(NR_CACHESTAT), ctypes.c_uint(0)
        self._rng_p, self._whole_p, self._cs_p = (ctypes.byref(self._rng), ctypes.byref(self._whole),
                                                  ctypes.byref(self._cs))
        self._unpack = _COUNTS.unpack_from
        self._syscall = _libc.syscall

    def __call__(self, fd: int, off: int = 0, length: int = 0) -> CacheStat:
        """cachestat of [off, off+length) of an open file (length 0: to its end). OSError on
        failure: ENOSYS before Linux 6.5, EPERM where the kernel hides the file's cache."""
        self._rng.off, self._rng.len = off, length
        return self._call(fd, self._rng_p)

    def whole(self, fd: int) -> CacheStat:
        """cachestat of a whole open file (the walk's call: nothing set per call)."""
        return self._call(fd, self._whole_p)

    def _call(self, fd: int, rng: object) -> CacheStat:
        # fd goes as a C int: the kernel takes an unsigned int (SYSCALL_DEFINE4(cachestat, ...)).
        if self._syscall(self._nr, fd, rng, self._cs_p, self._flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return CacheStat._make(self._unpack(self._cs))


def cachestat(fd: int, off: int = 0, length: int = 0) -> CacheStat:
    """cachestat(2) of [off, off+length) of an open file (length 0: to its end), in pages."""
    return Cachestat()(fd, off, length)


def _addr(mm: mmap.mmap) -> tuple[int, np.ndarray]:
    import numpy as np

    # ctypes.c_char.from_buffer needs a writable buffer; numpy takes a read-only one and tells
    # its address. The caller must drop the array before closing the map (BufferError).
    view = np.frombuffer(mm, dtype=np.uint8)
    return int(view.ctypes.data), view


MINCORE_WINDOW = 1 << 18  # pages per mincore call (1 GiB of file, a 256 KiB vector)


def mincore_map(mm: mmap.mmap, size: int, fd: int | None = None) -> np.ndarray:
    """File page indexes (u64, ascending) of the resident pages of a mapping of `size` bytes;
    asked in windows, so that a 1 TiB sparse file does not need a 256 MiB vector. With the
    file's fd, windows that cachestat finds empty are skipped (mincore walks every page table
    entry of a window; cachestat only the cached pages)."""
    import numpy as np

    stater = Cachestat() if fd is not None else None

    npages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    vec = np.zeros(min(npages, MINCORE_WINDOW), dtype=np.uint8)
    found = []
    addr, view = _addr(mm)
    try:
        for first in range(0, npages, MINCORE_WINDOW):
            n = min(MINCORE_WINDOW, npages - first)
            length = min(n * PAGE_SIZE, size - first * PAGE_SIZE)
            if stater is not None and fd is not None:
                try:
                    if stater(fd, first * PAGE_SIZE, length).cache == 0:
                        continue
                except OSError:
                    stater = None  # no cachestat (before 6.5): mincore every window
            if _libc.mincore(ctypes.c_void_p(addr + first * PAGE_SIZE), length, vec.ctypes.data) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            # mincore(2): only the least significant bit is defined
            found.append(np.flatnonzero(vec[:n] & 1).astype(np.uint64) + np.uint64(first))
    finally:
        del view
    return np.concatenate(found) if found else np.zeros(0, np.uint64)


def mincore(fd: int, size: int) -> int:
    """Resident pages of an open file of `size` bytes, by mincore on a read-only map."""
    if size <= 0:
        return 0  # a 0-byte map is EINVAL
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm:
        return len(mincore_map(mm, size))


def have_cachestat() -> bool:
    """Whether this kernel has cachestat (probed on a pipe, which it answers with zeros)."""
    r, w = os.pipe()
    try:
        cachestat(r)
        return True
    except OSError as e:
        return e.errno != errno.ENOSYS
    finally:
        os.close(r)
        os.close(w)


class FileStat(NamedTuple):
    """One regular file: where the walk found it, its size and its page-cache counts (pages).
    A tuple: the walk makes one per file, and a tuple is the cheapest object Python makes."""

    path: str
    size: int
    dev: int
    ino: int
    cache: CacheStat


class Skipped(NamedTuple):
    """A path the walk could not count, and why: permission, vanished, special, loop, error."""

    path: str
    reason: str
    detail: str = ""


def skip_reason(err: OSError) -> str:
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission"
    if err.errno in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR):
        return "vanished"
    if err.errno == errno.ELOOP:
        return "symlink"
    return "error"


OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)


def open_file(path: str, follow: bool) -> int:
    """Open for reading without blocking on a FIFO and without touching atime where allowed.
    O_NOATIME is refused (EPERM) on files the caller does not own unless root: retry without."""
    flags = OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW)
    try:
        return os.open(path, flags)
    except PermissionError:
        if not flags & getattr(os, "O_NOATIME", 0):
            raise
        return os.open(path, flags & ~getattr(os, "O_NOATIME", 0))


# The kernel shows a file's page cache only to its owner, a process that may write it, or
# CAP_SYS_ADMIN: cachestat fails with EPERM (seen on 6.18), and mincore reports every page as
# resident (mm/mincore.c can_do_mincore, since 5.0 / CVE-2019-5489), which util-linux fincore
# prints as if it were true. pmaps skips such files and counts them.
HIDDEN = "page cache hidden: not the owner, no write access"


def may_see_cache(path: str, s: os.stat_result) -> bool:
    """Whether mincore tells the truth about this file for us (mm/mincore.c can_do_mincore)."""
    return os.geteuid() in (0, s.st_uid) or os.access(path, os.W_OK)


def file_stat(path: str, follow: bool = True, use_cachestat: bool = True,
              stater: Cachestat | None = None) -> FileStat | Skipped:
    """The page-cache counts of one path (opened without following a final symlink unless
    `follow`); a Skipped for anything that is not a readable regular file."""
    try:
        fd = open_file(path, follow)
    except OSError as e:
        return Skipped(path, skip_reason(e), os.strerror(e.errno or 0))
    try:
        s = os.fstat(fd)
        if not st.S_ISREG(s.st_mode):
            return Skipped(path, "special", _kind(s.st_mode))
        if use_cachestat:
            try:
                cs = (stater or Cachestat())(fd)
            except PermissionError:
                return Skipped(path, "permission", HIDDEN)
        elif not may_see_cache(path, s):
            return Skipped(path, "permission", HIDDEN)
        else:
            cs = CacheStat(mincore(fd, s.st_size))
        return FileStat(path, s.st_size, s.st_dev, s.st_ino, cs)
    except OSError as e:
        return Skipped(path, skip_reason(e), os.strerror(e.errno or 0))
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((st.S_ISFIFO, "fifo"), (st.S_ISCHR, "character device"), (st.S_ISBLK, "block device"),
                       (st.S_ISSOCK, "socket"), (st.S_ISDIR, "directory"), (st.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "not a regular file"


def walk(paths: list[str], recursive: bool, follow: bool, xdev: bool) -> Iterator[str | Skipped]:
    """Regular-file candidates under `paths`, in a stable order (names sorted per directory).

    Paths given are followed when they are symlinks (as `find -H` does: /proc/PID/fd/N and
    map_files work); symlinks met in the walk only with `follow`, directory loops cut by
    (dev, inode). With `xdev` the walk stays on each given path's filesystem."""
    for top in paths:
        try:
            s = os.stat(top)
        except OSError as e:
            reason = "not found" if e.errno == errno.ENOENT else skip_reason(e)
            yield Skipped(top, reason, os.strerror(e.errno or 0))
            continue
        if not st.S_ISDIR(s.st_mode):
            # Never open a FIFO or a device (an open may block, or rewind a tape): count it.
            yield top if st.S_ISREG(s.st_mode) else Skipped(top, "special", _kind(s.st_mode))
            continue
        if not recursive:
            yield Skipped(top, "directory", "a directory (use -r)")
            continue
        seen = {(s.st_dev, s.st_ino)}
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as err:
                yield Skipped(d, skip_reason(err), os.strerror(err.errno or 0))
                continue
            subdirs = []
            for ent in entries:
                try:
                    if ent.is_file(follow_symlinks=False):  # a regular file, not a link: d_type, no syscall
                        yield ent.path
                        continue
                    is_link = ent.is_symlink()
                    if is_link and not follow:
                        continue  # not followed, not counted (find's default)
                    is_dir = ent.is_dir(follow_symlinks=follow)
                    is_file = not is_dir and ent.is_file(follow_symlinks=follow)
                    if not is_dir and not is_file:
                        yield Skipped(ent.path, "special", _kind(ent.stat(follow_symlinks=follow).st_mode))
                        continue
                except OSError as err:
                    yield Skipped(ent.path, skip_reason(err), os.strerror(err.errno or 0))
                    continue
                if is_dir:
                    try:
                        ds = ent.stat(follow_symlinks=follow)
                    except OSError as err:
                        yield Skipped(ent.path, skip_reason(err), os.strerror(err.errno or 0))
                        continue
                    if xdev and ds.st_dev != s.st_dev:
                        continue
                    if (ds.st_dev, ds.st_ino) in seen:
                        yield Skipped(ent.path, "loop", "directory loop")
                        continue
                    seen.add((ds.st_dev, ds.st_ino))
                    subdirs.append(ent.path)
                else:
                    yield ent.path
            stack.extend(reversed(subdirs))  # depth-first, in name order


def scan_files(paths: list[str], recursive: bool = False, follow: bool = False, xdev: bool = True,
               use_cachestat: bool = True) -> Iterator[FileStat | Skipped]:
    """FileStat or Skipped for every file the walk finds (given paths are always followed).

    The walk's files take the short way, four syscalls and one tuple each (open, fstat,
    cachestat, close: a 10,000-file tree is mostly Python's cost per file); anything unusual
    (an error, not a regular file any more, no cachestat) takes file_stat's, which says why."""
    given = set(paths)
    stater = Cachestat()
    whole = stater.whole if use_cachestat else None
    flags = OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW)
    open_, fstat, close, isreg = os.open, os.fstat, os.close, st.S_ISREG
    for item in walk(paths, recursive, follow, xdev):
        if not isinstance(item, str):
            yield item
            continue
        if whole is None or item in given:
            yield file_stat(item, follow or item in given, use_cachestat, stater)
            continue
        try:
            fd = open_(item, flags)
        except OSError:
            yield file_stat(item, follow, use_cachestat, stater)  # EPERM from O_NOATIME, or the reason
            continue
        try:
            s = fstat(fd)
            cs = whole(fd) if isreg(s.st_mode) else None
        except OSError:
            cs = None
        finally:
            close(fd)
        yield FileStat(item, s.st_size, s.st_dev, s.st_ino, cs) if cs is not None else \
            file_stat(item, follow, use_cachestat, stater)


def evict(path: str) -> tuple[int, int]:
    """POSIX_FADV_DONTNEED the whole file: (cached pages before, after). Only clean, unmapped
    pages go; needs write access (refused with PermissionError otherwise, as vmtouch -e is not)."""
    if not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "no write access", path)
    fd = open_file(path, True)
    try:
        before = cachestat(fd).cache
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return before, cachestat(fd).cache
    finally:
        os.close(fd)


def touch(path: str) -> tuple[int, int]:
    """Read every page of the file into the cache: (cached pages before, after)."""
    fd = open_file(path, True)
    try:
        before = cachestat(fd).cache
        buf = bytearray(1 << 20)
        off = 0
        while True:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                break
            off += n
        return before, cachestat(fd).cache
    finally:
        os.close(fd)


class MappedPages:
    """A file's resident pages as mapped into pmaps itself: file page index and our own pagemap
    entry of each (PFNs stay valid while the mapping is held)."""

    __slots__ = ("index", "path", "pm", "size")

    def __init__(self, path: str, size: int, index: np.ndarray, pm: np.ndarray) -> None:
        self.path, self.size = path, size
        self.index = index  # file page indexes, u64, ascending
        self.pm = pm  # pagemap entries of pmaps' mapping of those pages, u64


@contextlib.contextmanager
def map_resident(path: str) -> Iterator[MappedPages]:
    """Map a file read-only, find its resident pages with mincore and fault in only those
    (page-types -f's method), then read their PFNs from our own pagemap.

    MADV_POPULATE_READ (Linux 5.14) faults each resident run in: it fails with EFAULT, rather than
    killing pmaps with SIGBUS, where the file was truncated meanwhile. A page evicted between
    mincore and the populate would be read back in: such a page is not reported (it was not
    resident when asked). Faulting marks the pages accessed. Runs only for a readable file whose
    page cache the kernel shows us (may_see_cache): else mincore would say every page is resident.
    """
    import numpy as np

    from ..numeric import consecutive_runs
    from . import pagemap, procfs

    fd = open_file(path, True)
    try:
        s = os.fstat(fd)
        if not st.S_ISREG(s.st_mode):
            raise IsADirectoryError(errno.EINVAL, f"not a regular file ({_kind(s.st_mode)})", path)
        if not may_see_cache(path, s):
            raise PermissionError(errno.EPERM, HIDDEN, path)
        if s.st_size == 0:
            yield MappedPages(path, 0, np.zeros(0, np.uint64), np.zeros(0, np.uint64))
            return
        with mmap.mmap(fd, s.st_size, prot=mmap.PROT_READ) as mm:
            idx = mincore_map(mm, s.st_size, fd)
            addr, view = _addr(mm)
            try:
                first, count = consecutive_runs(idx)
                starts = idx[first].astype(np.int64)
                for f, c in zip(starts.tolist(), count.tolist()):
                    # EFAULT/ENOMEM: truncated or gone meanwhile; those pages stay not present
                    _libc.madvise(ctypes.c_void_p(addr + f * PAGE_SIZE), c * PAGE_SIZE, MADV_POPULATE_READ)
                pm = np.zeros(0, np.uint64)
                if len(idx):
                    pid = os.getpid()
                    pfd = pagemap.open_pagemap(pid)
                    try:
                        base = addr // PAGE_SIZE
                        pm = pagemap.read_runs(pfd, pid, starts + base, starts + base + count)
                    finally:
                        procfs.close(pfd)
                keep = pagemap.present(pm)
                yield MappedPages(path, s.st_size, idx[keep], pm[keep])
            finally:
                del view
    finally:
        os.close(fd)


def file_users() -> dict[tuple[int, int], set[int]]:
    """(st_dev, st_ino) -> pids that map the file (/proc/PID/maps) or hold it open (/proc/PID/fd).

    Processes that cannot be read (another user's, without root) or that exit meanwhile are left
    out: the answer is "who we can see". pmaps itself is left out."""
    from . import procfs

    out: dict[tuple[int, int], set[int]] = {}
    me = os.getpid()  # pmaps itself maps its libraries: not a user of them for this question
    for pid in procfs.list_pids():
        if pid == me:
            continue
        try:
            with open(procfs.proc_path(pid, "maps"), "rb") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) < 6 or parts[4] == b"0":
                        continue
                    maj, _, mnr = parts[3].partition(b":")
                    out.setdefault((os.makedev(int(maj, 16), int(mnr, 16)), int(parts[4])), set()).add(pid)
        except (OSError, ValueError):
            pass
        fd_dir = procfs.proc_path(pid, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                s = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if st.S_ISREG(s.st_mode):
                out.setdefault((s.st_dev, s.st_ino), set()).add(pid)
    return out
