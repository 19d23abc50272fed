"""DAMON physical-address monitoring through sysfs, used as a page-exact access detector.

Layout (Documentation/admin-guide/mm/damon/usage.rst, 6.x; checked on 6.18) under
/sys/kernel/mm/damon/admin/kdamonds/: nr_kdamonds, N/state (on, off, commit,
update_schemes_tried_regions, ...), N/contexts/nr_contexts, N/contexts/0/{avail_operations,
operations, monitoring_attrs/intervals/{sample_us,aggr_us,update_us},
monitoring_attrs/nr_regions/{min,max}, targets/nr_targets, targets/0/{pid_target,
regions/nr_regions, regions/R/{start,end}}, schemes/nr_schemes, schemes/0/{action,
access_pattern/{sz,nr_accesses,age}/{min,max} (all default to 0), tried_regions/R/{start,end,
nr_accesses,age}}}.

Why paddr and not vaddr: this project's kernels are built without CONFIG_DAMON_VADDR
(avail_operations lists only paddr; `operations` still reads "vaddr" by default and writing
"on" then fails with EINVAL). paddr does the same young-bit work through the rmap
(mm/damon/paddr.c damon_pa_mkold / damon_pa_young, ops-common.c damon_ptep_mkold): so the
regions are the target's resident PFNs, one page each.

How it is used (mm/damon/core.c, 6.x):
- one region per resident page: every sample interval the kdamond clears the young bits of one
  address of each region and checks it one sample later; for a one-page region that address is
  always the page, so nr_accesses > 0 at the end of the aggregation interval says whether that
  page was accessed. A large folio is checked as a whole (the last folio's result is reused), and
  a page mapped by several processes is accessed when any of them touched it.
- min_nr_regions = max_nr_regions = number of regions: the merge size limit is then one page
  (damon_region_sz_limit) and regions of one page are never split, so the regions stay as set.
- update_us longer than the run (paddr has no update op in 6.x; vaddr's would reset the regions).
- a `stat` scheme whose access pattern is nr_accesses >= 1; writing update_schemes_tried_regions
  to state blocks until the next aggregation has applied the scheme (damos_walk, 6.14+; an
  uninterruptible wait of up to one interval), then tried_regions lists the accessed regions.
The kdamond is claimed only when nr_kdamonds is 0, and always turned off and removed again.
"""
from __future__ import annotations

import errno
import os
import signal
from types import TracebackType

import numpy as np

from ..errors import AccessDenied, PmapsError, Unsupported
from ..numeric import PAGE_SIZE
from . import procfs

ADMIN = "/sys/kernel/mm/damon/admin"

MAX_REGIONS = 16384  # above it, adjacent resident pages are grouped into one region
SAMPLE_US = 5000  # DAMON's default sample interval
U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1


def usable(admin: str = ADMIN) -> str | None:
    """None when DAMON monitoring can be claimed now, else why not (one line)."""
    kd = os.path.join(admin, "kdamonds", "nr_kdamonds")
    if not os.path.exists(kd):
        return f"no DAMON sysfs interface ({admin}: CONFIG_DAMON_SYSFS)"
    if not os.access(kd, os.W_OK):
        return f"DAMON's sysfs interface needs root ({kd})"
    try:
        with open(kd, "rb") as f:
            n = int(f.read() or b"0")
    except (OSError, ValueError) as e:
        return f"cannot read {kd}: {e}"
    if n != 0:
        return f"DAMON is in use ({kd} is {n}): pmaps does not take over another user's kdamonds"
    return None


def page_regions(vpns: np.ndarray, limit: int = MAX_REGIONS) -> tuple[np.ndarray, np.ndarray, int]:
    """(first vpn, end vpn, pages per group) of the regions for sorted unique `vpns`. Pure.

    One region per page up to `limit`; above it, runs of `group` consecutive entries of vpns
    become one region each (spanning any unmapped pages between them)."""
    vpns = np.asarray(vpns, dtype=np.uint64)
    if len(vpns) == 0:
        return vpns, vpns, 1
    group = max(1, -(-len(vpns) // limit))
    first = vpns[::group]
    last = vpns[group - 1::group]
    if len(last) < len(first):
        last = np.append(last, vpns[-1])
    return first, last + np.uint64(1), group


def decode_tried(entries: list[tuple[bytes, bytes, bytes]]) -> np.ndarray:
    """tried_regions entries (start, end, nr_accesses file contents) -> rows [start, end, nr] u64. Pure."""
    rows = np.zeros((len(entries), 3), dtype=np.uint64)
    for i, (s, e, n) in enumerate(entries):
        rows[i] = (int(s.strip()), int(e.strip()), int(n.strip()))
    return rows[np.argsort(rows[:, 0], kind="stable")] if len(rows) else rows


def accessed_pages(vpns: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """Bool per vpn (any order): inside a region of `tried` (rows start, end in bytes, nr) with nr > 0. Pure."""
    vpns = np.asarray(vpns, dtype=np.uint64)
    hit = tried[tried[:, 2] > 0] if len(tried) else tried
    if len(hit) == 0 or len(vpns) == 0:
        return np.zeros(len(vpns), dtype=bool)
    starts = hit[:, 0] >> np.uint64(12)
    ends = (hit[:, 1] + np.uint64(PAGE_SIZE - 1)) >> np.uint64(12)
    i = np.searchsorted(starts, vpns, side="right") - 1
    ic = np.maximum(i, 0)
    return (i >= 0) & (vpns < ends[ic])


class Damon:
    """A claimed kdamond watching one process: `with Damon(pid) as d: rows = d.sample(...)`."""

    def __init__(self, pid: int, admin: str = ADMIN) -> None:
        self.pid = pid
        self.admin = admin
        self.kd = os.path.join(admin, "kdamonds")
        self.ctx = os.path.join(self.kd, "0", "contexts", "0")
        self.claimed = False

    # -- thin sysfs I/O
    def _write(self, rel: str, value: str | int) -> None:
        path = os.path.join(self.kd, rel) if not rel.startswith("/") else rel
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(value).encode())
            finally:
                os.close(fd)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise AccessDenied(f"permission denied: {path} (needs root)", self.pid, path) from e
            raise PmapsError(f"DAMON: cannot write {value!r} to {path}: {os.strerror(e.errno or 0)}",
                             self.pid, path) from e

    def _read(self, path: str) -> bytes:
        with open(path, "rb", buffering=0) as f:
            return f.read()

    def _c(self, rel: str) -> str:
        return os.path.join(self.ctx, rel)

    # -- claim and release
    def __enter__(self) -> Damon:
        why = usable(self.admin)
        if why is not None:
            raise Unsupported(why, self.pid, self.admin)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:  # no interruption between creating the kdamond and knowing it must be removed
            self._write("nr_kdamonds", 1)
            self.claimed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        try:
            self._write("0/contexts/nr_contexts", 1)
            if b"paddr" not in self._read(self._c("avail_operations")).split():
                raise Unsupported("DAMON has no paddr operations (CONFIG_DAMON_PADDR)", self.pid, self.admin)
            self._write(self._c("operations"), "paddr")
            self._write(self._c("targets/nr_targets"), 1)
            self._write(self._c("schemes/nr_schemes"), 1)
            s = "schemes/0/"
            self._write(self._c(s + "action"), "stat")
            for name, lo, hi in (("sz", 0, U64_MAX), ("nr_accesses", 1, U32_MAX), ("age", 0, U32_MAX)):
                self._write(self._c(f"{s}access_pattern/{name}/max"), hi)
                self._write(self._c(f"{s}access_pattern/{name}/min"), lo)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self._release()

    def _release(self) -> None:
        """Turn the kdamond off and remove it; SIGINT/SIGTERM wait until this is done."""
        if not self.claimed:
            return
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._off()
            try:
                self._write("nr_kdamonds", 0)
            except PmapsError:
                pass
            self.claimed = False
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _off(self) -> None:
        try:
            if self._read(os.path.join(self.kd, "0/state")).strip() != b"off":
                self._write("0/state", "off")
        except (OSError, PmapsError):
            pass

    # -- one measurement
    def sample(self, first: np.ndarray, end: np.ndarray, interval: float, sample_us: int) -> np.ndarray:
        """Watch regions [first, end) (PFNs) for `interval` s; rows (start, end, nr_accesses) accessed.

        Blocks for about `interval` (the aggregation interval); the kdamond is off again on return."""
        n = len(first)
        if n == 0:
            return np.zeros((0, 3), dtype=np.uint64)
        aggr_us = max(int(interval * 1e6), 2 * sample_us)
        self._write(self._c("monitoring_attrs/intervals/sample_us"), sample_us)
        self._write(self._c("monitoring_attrs/intervals/aggr_us"), aggr_us)
        # No damon_va_update (it would re-cover the three big areas of the address space) during the run.
        self._write(self._c("monitoring_attrs/intervals/update_us"), max(aggr_us * 100, 3_600_000_000))
        k = max(n, 3)  # damon_set_attrs() wants min_nr_regions >= 3
        self._write(self._c("monitoring_attrs/nr_regions/max"), k)
        self._write(self._c("monitoring_attrs/nr_regions/min"), k)
        regs = self._c("targets/0/regions")
        self._write(os.path.join(regs, "nr_regions"), 0)
        self._write(os.path.join(regs, "nr_regions"), n)
        for i, (a, b) in enumerate(zip((first << np.uint64(12)).tolist(), (end << np.uint64(12)).tolist())):
            # end first: a fresh region is 0-0, and start > end is refused
            self._write(f"{regs}/{i}/end", b)
            self._write(f"{regs}/{i}/start", a)
        tried = self._c("schemes/0/tried_regions")
        if procfs.process_state(self.pid) in (None, "Z", "X"):
            raise procfs.gone_error(self.pid, None, started=True)
        try:
            self._write("0/state", "on")
            # Blocks until the first aggregation interval ends and the scheme has been applied.
            self._write("0/state", "update_schemes_tried_regions")
            names = [d for d in os.listdir(tried) if d.isdigit()]
            entries = [tuple(self._read(os.path.join(tried, d, f)) for f in ("start", "end", "nr_accesses"))
                       for d in names]
        except (PmapsError, OSError) as e:
            if procfs.process_state(self.pid) in (None, "Z", "X"):
                raise procfs.gone_error(self.pid, None, started=True) from e
            raise
        finally:
            self._off()
        if procfs.process_state(self.pid) in (None, "Z", "X"):
            # The kdamond stops by itself when its target exits: what it read is incomplete.
            raise procfs.gone_error(self.pid, None, started=True)
        return decode_tried(entries)  # type: ignore[arg-type]
