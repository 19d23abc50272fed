"""One scan of many processes: pagemap columns per process, then kpageflags/kpagecount read once
for the union of all their PFNs (not once per process).

Each process is opened with `collect.Process(pid, Options(flags=False, counts=False))`: PAGEMAP_SCAN
(or the pagemap fallback) only. The page columns of every process are concatenated; one
`PfnReader.lookup` then reads kpageflags for every present PFN and kpagecount only for the pages
pagemap does not already mark "exclusively mapped" (mapcount 1, see collect.py).

Processes that exit mid-scan or cannot be read are counted in `SystemScan.skipped`, never dropped
silently; kernel threads (no mm) are not processes with memory and are left out. The scanning
process itself is left out too (its own memory changes while it scans).
"""
from __future__ import annotations

import io
import json
import zipfile
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .collect import Options, Process, _ordered_map, lookup_pages, pfns_visible
from .errors import AccessDenied, BadSnapshot, KernelThread, NoSuchProcess, PmapsError, ProcessGone, Unsupported
from .kernel import caps as capsmod
from .kernel import procfs
from .kernel.kpage import PfnReader
from .kernel.maps import Vma
from .kernel.smaps import decode_rollup
from .kernel.system import Ident, read_ident, read_meminfo, read_smaps_rollup
from .model import Known, Pages, Snapshot

SCHEMA = "pmaps-sysscan/1"
PARALLEL = 2
U64 = np.uint64


@dataclass
class ProcRec:
    """One scanned process: who it is, its VMAs, and where its pages sit in the scan's columns."""

    ident: Ident
    vmas: list[Vma]
    lo: int  # first page index in SystemScan.pages
    hi: int
    vma_lo: np.ndarray  # per VMA: [lo, hi) page indexes in SystemScan.pages
    vma_hi: np.ndarray

    @property
    def pid(self) -> int:
        return self.ident.pid


@dataclass
class SystemScan:
    """Every scanned process's pages in one set of columns, with kpageflags/kpagecount filled in."""

    procs: list[ProcRec]
    pages: Pages
    known: Known
    skipped: dict[str, list[int]] = field(default_factory=lambda: {"exited": [], "denied": [], "missing": []})
    meminfo: dict[str, int] = field(default_factory=dict)
    self_pss: int = 0  # PSS of the scanning process itself (left out of the scan), per its smaps_rollup
    complete: bool = True  # every process on the machine was asked for (no filter)
    time: float = field(default_factory=time.time)

    def skipped_line(self) -> str | None:
        """The one stderr line about processes that are not in the figures, or None."""
        parts = []
        if self.skipped["exited"]:
            parts.append(f"{len(self.skipped['exited'])} exited during the scan")
        if self.skipped["denied"]:
            pids = self.skipped["denied"]
            shown = ",".join(map(str, pids[:5])) + (",..." if len(pids) > 5 else "")
            parts.append(f"{len(pids)} unreadable (permission denied: pid {shown})")
        if self.skipped.get("missing"):
            pids = self.skipped["missing"]
            parts.append(f"{len(pids)} not found (no such process: pid {','.join(map(str, pids[:5]))}"
                         f"{',...' if len(pids) > 5 else ''})")
        if not parts:
            return None
        n = sum(len(v) for v in self.skipped.values())
        return f"{n} process{'es' if n > 1 else ''} not counted: " + "; ".join(parts)


def scan_system(pids: list[int] | None = None, select: Callable[[Ident], bool] | None = None,
                caps: capsmod.Caps | None = None, scan: bool | None = None) -> SystemScan:
    """Scan the given PIDs (default: every process) whose identity passes `select`."""
    caps = caps or capsmod.probe()
    opts = Options(flags=False, counts=False, scan=scan)
    me = os.getpid()
    todo = procfs.list_pids() if pids is None else list(pids)
    procs: list[ProcRec] = []
    parts: list[Pages] = []
    skipped: dict[str, list[int]] = {"exited": [], "denied": [], "missing": []}
    categories = True
    pos = 0
    def one(pid: int) -> tuple[str, int, Ident | None, Snapshot | None, bool]:
        """Scan one process: ("ok" | "skip" | "denied" | "exited" | "missing", pid, ident, snapshot, scanning)."""
        if pid == me or procfs.is_kernel_thread(pid):
            return "skip", pid, None, None, True
        try:
            ident = read_ident(pid)
            if select is not None and not select(ident):
                return "skip", pid, None, None, True
            with Process(pid, opts, caps) as proc:
                return "ok", pid, ident, proc.snapshot(workers=1), proc.scanning
        except KernelThread:
            return "skip", pid, None, None, True
        except AccessDenied:
            return "denied", pid, None, None, True
        except ProcessGone:
            return "exited", pid, None, None, True
        except NoSuchProcess:
            return "missing", pid, None, None, True
        except Unsupported:  # a zombie: its memory is gone
            return "exited", pid, None, None, True

    # Processes are read PARALLEL at a time: most of the time goes to the kernel (maps,
    # PAGEMAP_SCAN, pagemap), which runs without the GIL.
    for status, pid, ident, snap, scanning in _ordered_map(one, todo, workers=PARALLEL, ahead=4 * PARALLEL):
        if status != "ok":
            if status != "skip":
                skipped[status].append(pid)
            continue
        categories &= scanning
        bounds = snap.bounds().astype(np.int64) + pos
        n = len(snap.pages)
        procs.append(ProcRec(ident, snap.vmas, pos, pos + n, bounds[:, 0].copy(), bounds[:, 1].copy()))
        parts.append(snap.pages)
        pos += n
    pages = Pages.concat(parts)
    known = Known(pfn=caps.sys_admin, categories=categories and bool(procs), soft_dirty=caps.soft_dirty)
    if caps.sys_admin:
        known = _lookup_union(pages, known)
    try:
        meminfo = read_meminfo()
    except PmapsError:
        meminfo = {}
    try:
        # The scanner leaves itself out (its memory changes as it scans), yet its pages are in
        # /proc/meminfo: the kernel's own figure for it keeps the reconciliation honest.
        self_pss = decode_rollup(read_smaps_rollup(me)).get("Pss", 0)
    except PmapsError:
        self_pss = 0
    return SystemScan(procs, pages, known, skipped, meminfo, complete=pids is None and select is None,
                      self_pss=self_pss)


def _lookup_union(pages: Pages, known: Known) -> Known:
    """kpageflags for every present page and kpagecount for the non-exclusive ones, in one pass."""
    if not pfns_visible(pages):
        return Known(categories=known.categories, soft_dirty=known.soft_dirty)
    try:
        reader = PfnReader(want_flags=True, want_count=True)
    except PmapsError:
        return known
    with reader:
        if not (reader.can_flags and reader.can_count):
            return known
        lookup_pages(pages, reader)
    return Known(pfn=True, flags=True, count=True, categories=known.categories, soft_dirty=known.soft_dirty)


# -- fixtures: a scan saved to one .npz (for golden tests and bug reports) ----------------------

def dumps(scan: SystemScan) -> bytes:
    meta = {
        "schema": SCHEMA, "known": scan.known.to_dict(), "skipped": scan.skipped, "meminfo": scan.meminfo, "self_pss": scan.self_pss,
        "complete": scan.complete, "time": scan.time,
        "procs": [{"pid": p.ident.pid, "comm": p.ident.comm, "uid": p.ident.uid, "cgroup": p.ident.cgroup,
                   "lo": p.lo, "hi": p.hi,
                   "vmas": [[v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path] for v in p.vmas]}
                  for p in scan.procs],
    }
    cols = {k: getattr(scan.pages, k) for k in ("vpn", "pm", "cat", "kflags", "kcount")
            if getattr(scan.pages, k) is not None}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **cols)
    return buf.getvalue()


def loads(data: bytes, name: str = "<bytes>") -> SystemScan:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            cols = {k: z[k] for k in z.files if k != "meta"}
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise ValueError(f"schema {meta.get('schema')!r}")
        pages = Pages(cols["vpn"], cols["pm"], cols["cat"], cols.get("kflags"), cols.get("kcount"))
        procs = []
        for p in meta["procs"]:
            vmas = [Vma(a, b, pr, o, d, i, n) for a, b, pr, o, d, i, n in p["vmas"]]
            sub = pages.vpn[p["lo"]:p["hi"]]
            lo = np.searchsorted(sub, np.array([v.start >> 12 for v in vmas], dtype=U64)) + p["lo"]
            hi = np.searchsorted(sub, np.array([v.end >> 12 for v in vmas], dtype=U64)) + p["lo"]
            procs.append(ProcRec(Ident(p["pid"], p["comm"], p["uid"], p["cgroup"]), vmas, p["lo"], p["hi"],
                                 lo.astype(np.int64), hi.astype(np.int64)))
        return SystemScan(procs, pages, Known(**meta["known"]), meta["skipped"], meta["meminfo"],
                          complete=meta["complete"], time=meta["time"], self_pss=int(meta.get("self_pss", 0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as err:
        raise BadSnapshot(f"{name}: not a pmaps system scan file (or a damaged one)", path=name) from err
