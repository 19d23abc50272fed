"""A SystemScan saved to one .npz (`top --save-scan`; golden tests and bug reports). PFNs included."""
from __future__ import annotations

import numpy as np

from ..errors import BadSnapshot
from ..kernel.status import Ident
from ..model import Pages, ProcRec, SystemScan
from ..model.system import page_slices
from .codec import (
    DECODE_ERRORS,
    PID_LIMIT,
    as_float,
    as_int,
    as_str,
    decode_known,
    decode_vma_table,
    encode_known,
    encode_vmas,
    pack_npz,
    reason,
    unpack_npz,
)
from .files import PathLike, read_regular, save_bytes

SCHEMA = "pmaps-sysscan/1"
U64 = np.uint64


def dumps(scan: SystemScan) -> bytes:
    scan = scan.with_fixed()  # a scan cache's fixed pages saved among the others: the file holds every page
    meta = {
        "schema": SCHEMA, "known": encode_known(scan.known), "skipped": scan.skipped, "meminfo": scan.meminfo,
        "self_pss": scan.self_pss, "complete": scan.complete, "time": scan.time,
        "procs": [{"pid": p.ident.pid, "comm": p.ident.comm, "uid": p.ident.uid, "cgroup": p.ident.cgroup,
                   "lo": p.lo, "hi": p.hi, "vmas": encode_vmas(p.table)} for p in scan.procs],
    }
    cols = ["vpn", "pm", "cat", "kflags", "kcount"]
    if scan.memcgs is not None and scan.pages.kcgroup is not None:
        meta["memcgs"] = {str(k): v for k, v in scan.memcgs.items()}
        cols.append("kcgroup")
    return pack_npz(meta, {k: getattr(scan.pages, k) for k in cols})


def loads(data: bytes, name: str = "<bytes>") -> SystemScan:
    try:
        meta, cols = unpack_npz(data, SCHEMA)
        pages = Pages(cols["vpn"].astype(U64), cols["pm"].astype(U64), cols["cat"].astype(np.uint16),
                      cols.get("kflags"), cols.get("kcount"))
        memcgs = None
        if "memcgs" in meta:  # with its kcgroup column, or neither (a scan saved without kpagecgroup)
            if "kcgroup" not in cols or not isinstance(meta["memcgs"], dict):
                raise ValueError("memory cgroup names without their kcgroup column")
            memcgs = {as_int(int(k), "memcg inode", 0, 1 << 64): as_str(v, "memcg path")
                      for k, v in meta["memcgs"].items()}
            pages.kcgroup = cols["kcgroup"].astype(U64)
        procs = []
        for p in meta["procs"]:
            table = decode_vma_table(p["vmas"])
            lo, hi = as_int(p["lo"], "lo"), as_int(p["hi"], "hi")
            if not 0 <= lo <= hi <= len(pages):
                raise ValueError(f"process {p['pid']} has pages [{lo}, {hi}) outside the scan")
            vlo, vhi = page_slices(table, pages.vpn[lo:hi])
            ident = Ident(as_int(p["pid"], "pid", 0, PID_LIMIT), as_str(p["comm"], "comm"),
                          as_int(p["uid"], "uid", 0, 1 << 32), as_str(p["cgroup"], "cgroup"))
            procs.append(ProcRec(ident, table, lo, hi, vlo + lo, vhi + lo))
        return SystemScan(procs, pages, decode_known(meta["known"]), meta["skipped"], meta["meminfo"],
                          complete=bool(meta["complete"]), time=as_float(meta["time"], "time"),
                          self_pss=int(meta.get("self_pss", 0)), memcgs=memcgs)
    except DECODE_ERRORS as err:
        raise BadSnapshot(f"{name}: corrupt system scan, or not a pmaps scan file ({reason(err)})", path=name) from err


def save(scan: SystemScan, path: PathLike, force: bool = False) -> None:
    save_bytes(path, dumps(scan), force=force)


def load(path: PathLike) -> SystemScan:
    return loads(read_regular(path, what="pmaps scan file"), str(path))
