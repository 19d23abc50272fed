#!/usr/bin/env python3
"""A child process with a known memory layout, for testing and benchmarking pmaps.

Run as a script::

    python tests/memchild.py NAME:KIND:SIZE[:opt=value...] ...

Each spec builds one region, each its own VMA, separated from its neighbours by
PROT_NONE guard pages.  Kinds:

    anon[:every=N][:skip=A-B]  private anon rw, every N-th page written (default 1),
                               pages A..B-1 left untouched (a hole)
    zero                       private anon rw, every page only read (shared zero page)
    file[:read=A-B]            MAP_SHARED read-only mapping of a temp file; only pages
                               A..B-1 read (default: all). For a partial read the
                               file's page cache is dropped first and MADV_RANDOM set,
                               so only the touched pages are resident.
    cow                        MAP_PRIVATE rw mapping of a temp file: every page read,
                               even pages then written (they become anonymous)
    shared                     MAP_SHARED|MAP_ANONYMOUS rw, every page written; a forked
                               grandchild also maps (reads) every page, so kpagecount=2
    thp                        private anon, 2 MiB aligned, MADV_HUGEPAGE, every page written
    mlock                      private anon, written, then mlock()ed
    reserve                    PROT_NONE, MAP_NORESERVE, never touched (e.g. 64T)
    swap                       private anon, written, then MADV_PAGEOUT (needs swap)
    ksm                        private anon, identical pages, MADV_MERGEABLE

Every kind accepts ``label=STR`` to name the VMA with PR_SET_VMA_ANON_NAME
(private anonymous kinds only; shows as ``[anon:STR]`` in /proc/PID/maps).
Sizes accept K, M, G, T, P suffixes (powers of 1024).

After setup the child prints ONE JSON line (see ``Child.info``), then serves
commands from stdin, one per line, each answered with one JSON line once done::

    touch NAME [A B]    write pages A..B-1          dirty NAME [A B]   same as touch
    read NAME [A B]     read pages A..B-1           free NAME [A B]    MADV_DONTNEED
    pageout NAME [A B]  MADV_PAGEOUT                smaps NAME         that VMA's smaps fields
    info                the current layout JSON     ping               {"ok": true}
    exit                exit 0 (EOF on stdin does the same)

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}.

Tests import ``MemChild`` (a context manager that spawns this script) from here.
Stdlib only: this file must run under any Python 3.11 without the venv.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterable, Sequence

PAGE = os.sysconf("SC_PAGE_SIZE")
HUGE = 2 << 20  # PMD size on x86-64 / arm64 with 4K pages

# <sys/mman.h> values for x86-64 (also arm64; not the same on e.g. mips/parisc).
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x01, 0x02, 0x10, 0x20, 0x4000
MADV_RANDOM, MADV_DONTNEED, MADV_MERGEABLE, MADV_HUGEPAGE = 1, 4, 12, 14
MADV_DONTDUMP = 16
MADV_PAGEOUT = 21  # Linux 5.4
MADV_POPULATE_READ, MADV_POPULATE_WRITE = 22, 23  # Linux 5.14
PR_SET_PDEATHSIG = 1
PR_SET_VMA, PR_SET_VMA_ANON_NAME = 0x53564D41, 0  # Linux 5.17, CONFIG_ANON_VMA_NAME

WRITE_BYTE = 0x5A  # what writes put into pages: non-zero, so never mistaken for the zero page
FILE_BYTE = 0xA5  # what temp files are filled with

KINDS = ("anon", "zero", "file", "cow", "shared", "thp", "mlock", "reserve", "swap", "ksm")
OPTIONS = {"every", "skip", "read", "label"}

_SIZE_RE = re.compile(r"^(\d+)([KMGTP]?)(?:i?B)?$", re.IGNORECASE)
_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}


# The many-VMAs target: one 16 KiB-strided anonymous region, fully written, every other 8 KiB
# made read-only, so that each mprotect adds two VMAs, until the process has `target` VMAs or the
# kernel refuses (vm.max_map_count). It prints its VMA count, then waits for EOF on stdin.
MANY_VMAS = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
target = int(sys.argv[1])
n = target // 2 + 64
a = libc.mmap(None, n * 16384, 3, 0x22, -1, 0)
for i in range(0, n * 16384, 4096):
    ctypes.c_char.from_address(a + i).value = b"x"
def count():
    with open("/proc/self/maps", "rb") as f:
        return sum(1 for _ in f)
have = count()
i = 0
while i < n and have < target:
    if libc.mprotect(a + i * 16384 + 4096, 8192, 1):  # inside the region: +2 VMAs
        break
    i += 1
    have += 2
    if have >= target - 8:
        have = count()
print(count(), flush=True)
sys.stdin.read()
"""


class MemChildError(RuntimeError):
    """The child failed to start, answered with an error, or timed out."""


# ---------------------------------------------------------------------------
# small helpers shared by the child, the tests and the benchmark


def parse_size(text: str) -> int:
    """'64K' -> 65536; suffixes are powers of 1024."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) << _UNITS[m.group(2).upper()]


def parse_range(text: str) -> tuple[int, int]:
    """'A-B' -> (A, B), page indices, B exclusive."""
    a, sep, b = text.partition("-")
    if not sep:
        raise ValueError(f"bad page range {text!r} (want A-B)")
    lo, hi = int(a), int(b)
    if not 0 <= lo <= hi:
        raise ValueError(f"bad page range {text!r}")
    return lo, hi


def runs_pages(runs: Iterable[Sequence[int]]) -> int:
    """Total pages in a list of [first, count] runs."""
    return sum(count for _, count in runs)


def read_smaps(pid: int | str = "self") -> dict[int, dict[str, Any]]:
    """Parse /proc/PID/smaps into {start: {"start", "end", "perms", "path", field: kB, "VmFlags": [...]}}."""
    vmas: dict[int, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):  # a VMA header line
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                path = parts[5].rstrip("\n") if len(parts) > 5 else ""
                cur = {"start": lo, "end": hi, "perms": parts[1], "path": path}
                vmas[lo] = cur
            elif cur is not None:
                key, _, rest = line.partition(":")
                if key == "VmFlags":
                    cur[key] = rest.split()
                else:
                    value = rest.split()
                    try:
                        cur[key] = int(value[0])  # kB for the size fields
                    except (ValueError, IndexError):
                        cur[key] = rest.strip()
    return vmas


def read_maps(pid: int | str = "self") -> list[tuple[int, int, str, str]]:
    """Parse /proc/PID/maps into [(start, end, perms, path)]."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append((lo, hi, parts[1], parts[5].rstrip("\n") if len(parts) > 5 else ""))
    return out


class Runs:
    """A set of page indices kept as sorted, disjoint half-open [lo, hi) intervals."""

    def __init__(self, spans: Iterable[tuple[int, int]] = ()) -> None:
        self.spans: list[tuple[int, int]] = []
        for lo, hi in spans:
            self.add(lo, hi)

    def add(self, lo: int, hi: int) -> None:
        if lo >= hi:
            return
        if not self.spans or self.spans[-1][1] < lo:  # the common, appending case
            self.spans.append((lo, hi))
            return
        if self.spans[-1][0] <= lo:  # overlaps or touches only the last span
            self.spans[-1] = (self.spans[-1][0], max(hi, self.spans[-1][1]))
            return
        keep, merged = [], (lo, hi)
        for a, b in self.spans:
            if b < merged[0] or a > merged[1]:
                keep.append((a, b))
            else:
                merged = (min(a, merged[0]), max(b, merged[1]))
        keep.append(merged)
        keep.sort()
        self.spans = keep

    def add_many(self, spans: list[tuple[int, int]]) -> None:
        """Add many spans at once: one sort and one merge pass instead of O(n) per span."""
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(self.spans + spans):
            if merged and lo <= merged[-1][1]:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            elif lo < hi:
                merged.append((lo, hi))
        self.spans = merged

    def remove(self, lo: int, hi: int) -> None:
        out = []
        for a, b in self.spans:
            if b <= lo or a >= hi:
                out.append((a, b))
                continue
            if a < lo:
                out.append((a, lo))
            if b > hi:
                out.append((hi, b))
        self.spans = out

    def as_runs(self) -> list[list[int]]:
        return [[a, b - a] for a, b in self.spans]


# ---------------------------------------------------------------------------
# libc through ctypes: mmap(2) and friends, so PROT_NONE, MAP_FIXED and 64 TiB work

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
for _fn in ("munmap", "madvise", "mlock", "mincore"):
    getattr(_libc, _fn).restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
MAP_FAILED = ctypes.c_void_p(-1).value


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap(2); returns the address, raises OSError."""
    res = _libc.mmap(addr or None, length, prot, flags, fd, offset)
    if res is None or res == MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap({length:#x}, prot={prot}, flags={flags:#x}): {os.strerror(err)}")
    return int(res)


def munmap(addr: int, length: int) -> None:
    _check(_libc.munmap(addr, length), "munmap")


def madvise(addr: int, length: int, advice: int) -> None:
    _check(_libc.madvise(addr, length, advice), f"madvise({advice})")


def mincore_count(addr: int, length: int) -> int:
    """How many pages of [addr, addr+length) are in memory (page cache for file mappings)."""
    n = (length + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * n)()
    _check(_libc.mincore(addr, length, vec), "mincore")
    return n - bytes(vec).count(0)


def populate_read(addr: int, length: int) -> None:
    """Read-fault every page of the range (maps the zero page for untouched private anon)."""
    if length <= 0:
        return
    try:
        madvise(addr, length, MADV_POPULATE_READ)
    except OSError as e:
        if e.errno != errno.EINVAL:  # e.g. EFAULT on PROT_NONE: a plain read would SIGSEGV
            raise
        # Kernels before 5.14 do not know the advice: touch one byte per page from Python.
        for a in range(addr, addr + length, PAGE):
            ctypes.c_char.from_address(a).value  # noqa: B018 - the read is the point


# ---------------------------------------------------------------------------
# the child process


class Region:
    """One region: its spec, its place, and which pages were touched/written."""

    def __init__(self, spec: str) -> None:
        parts = spec.split(":")
        if len(parts) < 3:
            raise ValueError(f"bad spec {spec!r}: want NAME:KIND:SIZE[:opt=value...]")
        self.name, self.kind = parts[0], parts[1]
        if not self.name or not re.match(r"^[\w.-]+$", self.name):
            raise ValueError(f"bad region name {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} in {spec!r}; kinds: {', '.join(KINDS)}")
        self.size = parse_size(parts[2])
        if self.size <= 0 or self.size % PAGE:
            raise ValueError(f"size of {self.name} must be a positive multiple of {PAGE}")
        self.pages = self.size // PAGE
        self.opts: dict[str, str] = {}
        for opt in parts[3:]:
            key, sep, value = opt.partition("=")
            if not sep or key not in OPTIONS:
                raise ValueError(f"bad option {opt!r} in {spec!r}; options: {', '.join(sorted(OPTIONS))}")
            self.opts[key] = value
        self.every = int(self.opts.get("every", "1"))
        if self.every < 1:
            raise ValueError("every must be >= 1")
        self.skip = parse_range(self.opts["skip"]) if "skip" in self.opts else None
        self.read = parse_range(self.opts["read"]) if "read" in self.opts else (0, self.pages)
        if self.read[1] > self.pages:
            raise ValueError(f"read range {self.read} beyond {self.pages} pages of {self.name}")
        self.start = 0
        self.file: str | None = None
        self.touched = Runs()  # pages read or written by us
        self.written = Runs()  # pages written by us
        self.extra: dict[str, Any] = {}

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def align(self) -> int:
        return HUGE if self.kind == "thp" else PAGE

    @property
    def writable(self) -> bool:
        return self.kind not in ("file", "reserve")

    @property
    def readable(self) -> bool:
        return self.kind != "reserve"

    def addr(self, page: int) -> int:
        return self.start + page * PAGE

    # building -------------------------------------------------------------

    def write(self, lo: int, hi: int) -> None:
        """Write pages lo..hi-1 with one memset (a write fault each: real, private pages)."""
        if hi > lo:
            length = (hi - lo) * PAGE
            if length >= HUGE:
                # Faulting the range in one madvise call is ~20% faster than a trap per page.
                try:
                    madvise(self.addr(lo), length, MADV_POPULATE_WRITE)
                except OSError:
                    pass  # before 5.14: the memset below faults the pages in
            ctypes.memset(self.addr(lo), WRITE_BYTE, length)
            self.touched.add(lo, hi)
            self.written.add(lo, hi)

    def write_every(self, lo: int, hi: int, every: int) -> None:
        """Write one byte in every `every`-th page of lo..hi-1 (page indices counted from 0)."""
        if every == 1:
            self.write(lo, hi)
            return
        first = lo + (-lo) % every
        memset, base = ctypes.memset, self.start
        for i in range(first, hi, every):
            memset(base + i * PAGE, WRITE_BYTE, 1)
        spans = [(i, i + 1) for i in range(first, hi, every)]
        self.touched.add_many(spans)
        self.written.add_many(spans)

    def read_pages(self, lo: int, hi: int) -> None:
        if hi > lo:
            populate_read(self.addr(lo), (hi - lo) * PAGE)
            self.touched.add(lo, hi)

    def make_file(self, tmpdir: str) -> int:
        """Create the backing temp file filled with FILE_BYTE, fsync it, return an O_RDWR fd."""
        self.file = os.path.join(tmpdir, f"{self.name}.dat")
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        chunk = bytes([FILE_BYTE]) * (1 << 20)
        left = self.size
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])
        os.fsync(fd)  # clean pages: only clean page cache can be dropped below
        return fd

    def build(self, addr: int, tmpdir: str) -> None:
        """Map the region at `addr` (inside our PROT_NONE reservation) and touch it."""
        fixed = MAP_FIXED  # replaces part of the reservation; each call makes its own VMA
        kind = self.kind
        if kind == "reserve":
            self.start = mmap(addr, self.size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed)
        elif kind in ("file", "cow"):
            fd = self.make_file(tmpdir)
            try:
                partial = self.read != (0, self.pages)
                if kind == "file" and partial:
                    # Drop the (clean, fsync'd) page cache so only what we touch is resident.
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if kind == "file":
                    self.start = mmap(addr, self.size, PROT_READ, MAP_SHARED | fixed, fd)
                else:
                    self.start = mmap(addr, self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | fixed, fd)
            finally:
                os.close(fd)  # the mapping keeps the file referenced
            if kind == "file":
                self.extra["cache_dropped"] = partial
                if partial:
                    # No readahead on faults: otherwise a 1-page read pulls in up to 128 KiB+.
                    madvise(self.start, self.size, MADV_RANDOM)
                    self.extra["cached_before_touch"] = mincore_count(self.start, self.size)
                self.read_pages(*self.read)
                self.extra["cached_pages"] = mincore_count(self.start, self.size)
            else:
                self.read_pages(0, self.pages)
                # COW: each even page gets a private anonymous copy.
                self.write_every(0, self.pages, 2)
        else:
            flags = MAP_ANONYMOUS | fixed | (MAP_SHARED if kind == "shared" else MAP_PRIVATE)
            self.start = mmap(addr, self.size, PROT_READ | PROT_WRITE, flags)
            if kind == "thp":
                madvise(self.start, self.size, MADV_HUGEPAGE)  # before the first fault
            if "label" in self.opts:
                name = ctypes.c_char_p(self.opts["label"].encode())
                rc = _libc.prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, self.start, self.size,
                                 ctypes.cast(name, ctypes.c_void_p).value or 0)
                _check(rc, "prctl(PR_SET_VMA_ANON_NAME) (needs CONFIG_ANON_VMA_NAME, Linux 5.17+)")
            if kind == "zero":
                self.read_pages(0, self.pages)
            elif kind == "anon":
                lo, hi = self.skip or (self.pages, self.pages)
                self.write_every(0, min(lo, self.pages), self.every)
                # Keep the every-N phase counted from page 0 after the hole.
                self.write_every(min(hi, self.pages), self.pages, self.every)
            else:
                self.write(0, self.pages)
            if kind == "mlock":
                _check(_libc.mlock(self.start, self.size), "mlock (RLIMIT_MEMLOCK without CAP_IPC_LOCK?)")
                self.extra["locked"] = True
            elif kind == "ksm":
                madvise(self.start, self.size, MADV_MERGEABLE)
                self.extra["ksm_run"] = _read_first("/sys/kernel/mm/ksm/run")
            elif kind == "swap":
                self.extra["swapped_pages"] = self.page_out(0, self.pages)

    def page_out(self, lo: int, hi: int) -> int:
        """MADV_PAGEOUT pages lo..hi-1; return how many pages smaps says are swapped for the VMA."""
        swapped = 0
        # Without swap, reclaim cannot move anonymous pages anywhere: one try tells us that.
        for _ in range(4 if _swap_enabled() else 1):
            madvise(self.addr(lo), (hi - lo) * PAGE, MADV_PAGEOUT)
            swapped = self.smaps().get("Swap", 0) * 1024 // PAGE
            if swapped >= hi - lo:
                break
            time.sleep(0.05)  # reclaim skips pages still in per-CPU LRU batches: try again
        return swapped

    def smaps(self) -> dict[str, Any]:
        return read_smaps("self").get(self.start, {})

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "pages": self.pages,
            "touched": self.touched.as_runs(),
            "written": self.written.as_runs(),
            "file": self.file,
            "offset": 0,
            "prot": {"file": "r--", "reserve": "---"}.get(self.kind, "rw-"),
            "shared": self.kind in ("file", "shared"),
        }
        if self.kind == "anon":
            d["every"] = self.every
            d["skip"] = list(self.skip) if self.skip else None
        if self.kind == "file":
            d["read"] = list(self.read)
        if "label" in self.opts:
            d["label"] = self.opts["label"]
        d.update(self.extra)
        return d


def _read_first(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _swap_enabled() -> bool:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("SwapTotal:"):
                return int(line.split()[1]) > 0
    return False


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


class Child:
    """The process side: builds the regions, then serves commands."""

    def __init__(self, specs: Sequence[str]) -> None:
        self.regions: dict[str, Region] = {}
        for spec in specs:
            r = Region(spec)
            if r.name in self.regions:
                raise ValueError(f"duplicate region name {r.name!r}")
            self.regions[r.name] = r
        self.tmpdir = tempfile.mkdtemp(prefix="memchild-", dir=os.environ.get("MEMCHILD_TMPDIR"))
        self.grandchild: int | None = None
        self.build_seconds = 0.0

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def layout(self) -> tuple[dict[str, int], int]:
        """Offsets of each region from a 2 MiB aligned base, with a guard page before and after each."""
        offsets, off = {}, 0
        for r in self.regions.values():
            off = _align_up(off + PAGE, r.align)  # >= 1 guard page
            offsets[r.name] = off
            off += r.size
        return offsets, off + PAGE

    def build(self) -> None:
        t0 = time.monotonic()
        offsets, total = self.layout()
        # One PROT_NONE reservation for the whole layout; regions are MAP_FIXED into it, so the
        # leftovers between them are guard VMAs that stop anonymous neighbours from merging.
        # PROT_NONE private mappings are not charged to the commit limit, so this costs nothing.
        span = mmap(0, total + HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS)
        base = _align_up(span, HUGE)
        if base > span:
            munmap(span, base - span)
        tail = span + total + HUGE - (base + total)
        if tail:
            munmap(base + total, tail)
        # Mark the guards so they differ from a `reserve` region (PROT_NONE too) even where
        # MAP_NORESERVE is ignored (overcommit_memory=2) and VM_NORESERVE cannot tell them apart.
        madvise(base, total, MADV_DONTDUMP)
        self.span = (base, total)
        # Shared regions first, then the grandchild, then the rest: a fork after the private
        # regions exist would map their pages in both processes (kpagecount 2, COW-shared).
        order = [r for r in self.regions.values() if r.kind == "shared"]
        for r in order:
            r.build(base + offsets[r.name], self.tmpdir)
        if order:
            self.grandchild = self.fork_grandchild(order)
        for r in self.regions.values():
            if r.kind != "shared":
                r.build(base + offsets[r.name], self.tmpdir)
        self.verify()
        self.build_seconds = time.monotonic() - t0

    def fork_grandchild(self, shared: list[Region]) -> int:
        """Fork one process that maps every page of the shared regions and lives until we exit."""
        parent = os.getpid()
        rfd, wfd = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid:
            os.close(wfd)
            os.read(rfd, 1)  # wait until the grandchild has mapped the pages
            os.close(rfd)
            return pid
        try:
            os.close(rfd)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(0)
            # Let go of the parent's pipes so its readers see EOF when it exits.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            for r in shared:
                populate_read(r.start, r.size)
            # Keep only the shared regions: the rest of the reservation means nothing here.
            base, total = self.span
            cursor = base
            for r in sorted(shared, key=lambda r: r.start):
                if r.start > cursor:
                    munmap(cursor, r.start - cursor)
                cursor = r.end
            if base + total > cursor:
                munmap(cursor, base + total - cursor)
            os.write(wfd, b"x")
            os.close(wfd)
            while os.getppid() == parent:  # PDEATHSIG is the main exit; this is the backstop
                time.sleep(1)
        finally:
            os._exit(0)

    def verify(self) -> None:
        """Each region must be exactly one VMA with exactly its bounds."""
        vmas = {(lo, hi) for lo, hi, _, _ in read_maps("self")}
        for r in self.regions.values():
            if (r.start, r.end) not in vmas:
                near = [f"{lo:x}-{hi:x}" for lo, hi, _, _ in read_maps("self") if hi > r.start and lo < r.end]
                raise RuntimeError(f"region {r.name} {r.start:x}-{r.end:x} is not one VMA: {near}")

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "page_size": PAGE,
            "grandchild": self.grandchild,
            "tmpdir": self.tmpdir,
            "uid": os.getuid(),
            "build_seconds": round(self.build_seconds, 3),
            "thp": _read_first("/sys/kernel/mm/transparent_hugepage/enabled"),
            "regions": {name: r.to_json() for name, r in self.regions.items()},
        }

    def command(self, line: str) -> dict[str, Any] | None:
        """Run one command line; None means exit."""
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        op, args = words[0], words[1:]
        if op == "exit":
            return None
        if op == "ping":
            return {"ok": True}
        if op == "info":
            return {"ok": True, "info": self.info()}
        if not args or args[0] not in self.regions:
            return {"ok": False, "error": f"{op}: unknown or missing region name"}
        r = self.regions[args[0]]
        if op == "smaps":
            return {"ok": True, "smaps": r.smaps()}
        if len(args) == 3:
            lo, hi = int(args[1]), int(args[2])
        elif len(args) == 1:
            lo, hi = 0, r.pages
        else:
            return {"ok": False, "error": f"usage: {op} NAME [A B]"}
        if not 0 <= lo <= hi <= r.pages:
            return {"ok": False, "error": f"pages {lo}..{hi} outside 0..{r.pages} of {r.name}"}
        length = (hi - lo) * PAGE
        if op in ("touch", "dirty"):
            if not r.writable:  # writing would SIGSEGV the child
                return {"ok": False, "error": f"{r.name} ({r.kind}) is not writable"}
            r.write(lo, hi)
        elif op == "read":
            if not r.readable:
                return {"ok": False, "error": f"{r.name} ({r.kind}) is not readable"}
            r.read_pages(lo, hi)
        elif op == "free":
            if length:
                madvise(r.addr(lo), length, MADV_DONTNEED)
            r.touched.remove(lo, hi)
            r.written.remove(lo, hi)
        elif op == "pageout":
            if length:
                madvise(r.addr(lo), length, MADV_PAGEOUT)
        else:
            return {"ok": False, "error": f"unknown command {op!r}"}
        return {"ok": True}

    def serve(self) -> None:
        for line in sys.stdin:
            try:
                answer = self.command(line)
            except (OSError, ValueError) as e:
                answer = {"ok": False, "error": str(e)}
            if answer is None:
                break
            _emit(answer)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    # Exit through sys.exit so the finally below removes the temp files.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        child = Child(argv)
    except ValueError as e:
        _emit({"ok": False, "error": str(e)})
        return 2
    try:
        try:
            child.build()
        except (OSError, RuntimeError, ValueError) as e:
            _emit({"ok": False, "error": f"setup failed: {e}"})
            return 1
        _emit(child.info())
        child.serve()
        return 0
    finally:
        if child.grandchild and os.getpid() != child.grandchild:
            try:
                os.kill(child.grandchild, signal.SIGKILL)
                os.waitpid(child.grandchild, 0)
            except OSError:
                pass
        child.cleanup()


# ---------------------------------------------------------------------------
# the test side


def _starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, to tell a process from a later one with the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class MemChild:
    """Spawn ``memchild.py SPECS...`` and talk to it.

    >>> with MemChild(["a:anon:64K", "z:zero:1M"]) as mc:
    ...     mc.regions["a"]["start"], mc.cmd("touch z 0 4")

    ``user`` (uid, e.g. 65534) runs the child through ``setpriv`` as that user and group.
    ``env`` and ``preexec`` go to ``subprocess.Popen`` (env=None inherits ours).
    """

    SCRIPT = os.path.abspath(__file__)

    def __init__(
        self,
        specs: Sequence[str],
        env: dict[str, str] | None = None,
        preexec: Any = None,
        user: int | str | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.specs = list(specs)
        self.env = env
        self.preexec = preexec
        self.user = user
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._buf = bytearray()
        self._stderr: Any = None
        self._gc_start: int | None = None

    # lifecycle ----------------------------------------------------------------

    def start(self) -> "MemChild":
        argv = [sys.executable, self.SCRIPT, *self.specs]
        if self.user is not None:
            argv = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups", *argv]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=self.env, preexec_fn=self.preexec, bufsize=0,
        )
        try:
            info = self._read_json(self.timeout)
            if "regions" not in info:
                raise MemChildError(f"memchild {self.specs}: {info.get('error', info)}{self._stderr_tail()}")
        except BaseException:
            self.close()
            raise
        self.info = info
        if info.get("grandchild"):
            self._gc_start = _starttime(info["grandchild"])
        return self

    def __enter__(self) -> "MemChild":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to exit; kill it (and its grandchild) if it does not in time."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"exit\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        gc = self.info.get("grandchild")
        if gc and self._gc_start is not None and _starttime(gc) == self._gc_start:
            try:  # normally PDEATHSIG has already done this
                os.kill(gc, signal.SIGKILL)
            except OSError:
                pass
        if self.info.get("tmpdir"):  # the child removes it, unless it was killed
            shutil.rmtree(self.info["tmpdir"], ignore_errors=True)
        if self._stderr:
            self._stderr.close()
        self.proc = None

    # talking ------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def regions(self) -> dict[str, dict[str, Any]]:
        return self.info["regions"]

    @property
    def grandchild(self) -> int | None:
        return self.info.get("grandchild")

    def cmd(self, line: str, timeout: float = 120.0, check: bool = True) -> dict[str, Any]:
        """Send one command; return its parsed answer (raise MemChildError on error if check)."""
        if self.proc is None or self.proc.stdin is None:
            raise MemChildError("memchild is not running")
        self.proc.stdin.write(line.rstrip("\n").encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._read_json(timeout)
        if check and not answer.get("ok"):
            raise MemChildError(f"{line!r}: {answer.get('error', answer)}")
        return answer

    def refresh(self) -> dict[str, Any]:
        """Re-read the layout (touched runs change with commands)."""
        self.info = self.cmd("info")["info"]
        return self.info

    def _read_json(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise MemChildError(f"memchild did not answer within {timeout}s{self._stderr_tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.proc.wait(5)
                    raise MemChildError(
                        f"memchild exited (rc={self.proc.returncode}) without answering{self._stderr_tail()}"
                    )
                self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        return json.loads(line)

    def _stderr_tail(self) -> str:
        if not self._stderr:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-4000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""
        return f"\n--- memchild stderr ---\n{text}" if text else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
