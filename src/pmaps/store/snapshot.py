"""Snapshots: one .npz file (numpy's zip of arrays), versioned, written atomically.

The file holds the page columns as arrays and the rest (schema, pid, comm, VMAs, what is known)
as JSON. Without `keep_pfns` the PFNs are stripped before writing (they are sensitive:
Rowhammer), and the file is created 0600 either way.
"""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from ..errors import BadSnapshot
from ..kernel.maps import Vma, VmaTable
from ..model import Known, Pages, Sample, Snapshot, inside_vmas
from ..model.snapshot import strip_pfns
from .codec import (
    DECODE_ERRORS,
    PID_LIMIT,
    as_float,
    as_int,
    as_str,
    collector_paused,
    decode_known,
    decode_vma_table,
    encode_known,
    encode_vmas,
    pack_npz,
    reason,
    unpack_npz,
    vmas_json,
)
from .files import PathLike, read_regular, save_bytes

SCHEMA = "pmaps-snapshot/1"
_COLUMNS = ("vpn", "pm", "cat", "kflags", "kcount", "idle", "kcgroup")


def dumps(snap: Snapshot, keep_pfns: bool = False) -> bytes:
    """A snapshot file's bytes (PFNs only with keep_pfns)."""
    return dumps_parts(snap.pid, snap.comm, snap.table if snap.table is not None else snap.vmas, snap.pages,
                       snap.known, keep_pfns, snap.time, snap.notes)


def dumps_parts(pid: int, comm: str, vmas: list[Vma] | VmaTable, pages: Pages, known: Known,
                keep_pfns: bool = False, when: float | None = None, notes: list[str] | None = None) -> bytes:
    """dumps of a snapshot given as its parts: a live read's VMA table is written as it is, by
    numpy (vmas_json: the same text as json.dumps of its Vma list, without 65,000 Vma objects
    and their JSON encoding, ~130 ms)."""
    if not keep_pfns and known.pfn:
        pages, known = strip_pfns(pages, known)
    head = {"schema": SCHEMA, "pid": pid, "comm": comm, "time": time.time() if when is None else when,
            "notes": notes or [], "known": encode_known(known)}
    meta: dict[str, Any] | str
    if isinstance(vmas, VmaTable):  # "vmas" is the last key: the head's JSON, then the table's
        meta = json.dumps(head)[:-1] + ', "vmas": ' + "".join(vmas_json(vmas)) + "}"
    else:
        meta = {**head, "vmas": encode_vmas(vmas)}
    return pack_npz(meta, {k: getattr(pages, k) for k in _COLUMNS})


def loads(data: bytes, name: str = "<bytes>") -> Snapshot:
    """Parse a snapshot file's bytes; BadSnapshot on anything malformed."""
    pid, comm, table, pages, known, when, notes = _decode(data, name)
    return Snapshot(pid, comm, table.vmas, pages, known, when, notes, table=table)


def loads_sample(data: bytes, name: str = "<bytes>") -> Sample:
    """Sample.of_snapshot(loads(data, name)), the VMAs kept as columns: no `Vma` object per VMA
    (65,000 of them cost ~40 ms to make), as `pmaps diff SAVED PID` reads a snapshot."""
    pid, comm, table, pages, known, when, _notes = _decode(data, name)
    return Sample.of_pages(pid, comm, table, pages, known, when)


def _decode(data: bytes, name: str) -> tuple[int, str, VmaTable, Pages, Known, float, list[str]]:
    """A snapshot file's fields, checked; BadSnapshot on anything malformed."""
    try:
        with collector_paused():  # the VMA list's objects made and dropped unseen by the collector
            meta, cols = unpack_npz(data, SCHEMA, vmas=True, increasing="vpn")
            table = decode_vma_table(meta.pop("vmas"))
        for k in ("vpn", "pm", "cat"):
            if k not in cols:
                raise ValueError(f"no {k} column")
        if (cols["cat"].astype(np.int64) >> 16).any() or (cols["cat"] < 0).any():
            raise ValueError("column cat holds values beyond 16 bits")
        pages = Pages(cols["vpn"].astype(np.uint64, copy=False), cols["pm"].astype(np.uint64, copy=False),
                      cols["cat"].astype(np.uint16, copy=False),
                      _u64(cols.get("kflags")), _u64(cols.get("kcount")),
                      None if cols.get("idle") is None else cols["idle"].astype(bool), _u64(cols.get("kcgroup")))
        if len(pages) > 1 and not (pages.vpn[1:] > pages.vpn[:-1]).all():
            raise ValueError("pages are not in address order")
        check_inside(pages.vpn, table)
        notes = meta.get("notes", [])
        if not isinstance(notes, list) or len(notes) > 1000:
            raise ValueError("notes is not a list")
        return (as_int(meta["pid"], "pid", 0, PID_LIMIT), as_str(meta["comm"], "comm"), table, pages,
                decode_known(meta["known"]), as_float(meta["time"], "time"), [as_str(n, "a note") for n in notes])
    except DECODE_ERRORS as err:
        raise BadSnapshot(f"{name}: corrupt snapshot, or not a pmaps snapshot file ({reason(err)})", path=name) from err


def _u64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a.astype(np.uint64, copy=False)


def check_inside(vpn: np.ndarray, vmas: list[Vma] | VmaTable) -> None:
    """ValueError unless every page lies inside one of the VMAs."""
    if len(vpn) and not inside_vmas(vpn, vmas).all():
        raise ValueError("pages lie outside every VMA")


def save(snap: Snapshot, path: PathLike, keep_pfns: bool = False, force: bool = False) -> None:
    """Write a new snapshot file atomically (0600); an existing regular file only with force.
    PFNs only with keep_pfns."""
    save_bytes(path, dumps(snap, keep_pfns), force=force)


def save_parts(path: PathLike, pid: int, comm: str, vmas: list[Vma] | VmaTable, pages: Pages, known: Known,
               keep_pfns: bool = False, force: bool = False) -> None:
    """save of a snapshot given as its parts (dumps_parts): `pmaps save` of a live process."""
    save_bytes(path, dumps_parts(pid, comm, vmas, pages, known, keep_pfns), force=force)


def load(path: PathLike) -> Snapshot:
    return loads(read_regular(path, what="pmaps snapshot"), str(path))


def load_sample(path: PathLike) -> Sample:
    """load(path) as a Sample (loads_sample)."""
    return loads_sample(read_regular(path, what="pmaps snapshot"), str(path))
