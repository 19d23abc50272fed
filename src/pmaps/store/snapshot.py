"""Snapshots: one .npz file (numpy's zip of arrays), versioned, written atomically.

The file holds the page columns as arrays and the rest (schema, pid, comm, VMAs, what is known)
as JSON. Without `keep_pfns` the PFNs are stripped before writing (they are sensitive:
Rowhammer), and the file is created 0600 either way.
"""
from __future__ import annotations

import numpy as np

from ..errors import BadSnapshot
from ..model import Pages, Snapshot
from .codec import DECODE_ERRORS, decode_known, decode_vmas, encode_known, encode_vmas, pack_npz, unpack_npz
from .files import PathLike, load_bytes, save_bytes

SCHEMA = "pmaps-snapshot/1"
_COLUMNS = ("vpn", "pm", "cat", "kflags", "kcount", "idle", "kcgroup")


def dumps(snap: Snapshot, keep_pfns: bool = False) -> bytes:
    if not keep_pfns and snap.known.pfn:
        snap = snap.without_pfns()
    meta = {"schema": SCHEMA, "pid": snap.pid, "comm": snap.comm, "time": snap.time, "notes": snap.notes,
            "known": encode_known(snap.known), "vmas": encode_vmas(snap.vmas)}
    return pack_npz(meta, {k: getattr(snap.pages, k) for k in _COLUMNS})


def loads(data: bytes, name: str = "<bytes>") -> Snapshot:
    """Parse a snapshot file's bytes; BadSnapshot on anything malformed."""
    try:
        meta, cols = unpack_npz(data, SCHEMA)
        vmas = decode_vmas(meta["vmas"])
        pages = Pages(cols["vpn"].astype(np.uint64), cols["pm"].astype(np.uint64), cols["cat"].astype(np.uint16),
                      cols.get("kflags"), cols.get("kcount"), cols.get("idle"), cols.get("kcgroup"))
        if len(pages) > 1 and not (pages.vpn[1:] > pages.vpn[:-1]).all():
            raise ValueError("pages are not in address order")
        return Snapshot(int(meta["pid"]), str(meta["comm"]), vmas, pages, decode_known(meta["known"]),
                        float(meta["time"]), list(meta.get("notes", [])))
    except DECODE_ERRORS as err:
        raise BadSnapshot(f"{name}: corrupt snapshot, or not a pmaps snapshot file ({err})", path=name) from err


def save(snap: Snapshot, path: PathLike, keep_pfns: bool = False) -> None:
    """Write a snapshot file atomically (0600). PFNs only with keep_pfns."""
    save_bytes(path, dumps(snap, keep_pfns))


def load(path: PathLike) -> Snapshot:
    return loads(load_bytes(path), str(path))
