"""Save and load Snapshots: one .npz file (numpy's zip of arrays), versioned, written atomically.

The file holds the page columns as arrays and the rest (schema, pid, comm, VMAs, what is
known) as JSON. Without `keep_pfns` the PFNs are stripped before writing (they are
sensitive: Rowhammer), and the file is created 0600 either way.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import BadSnapshot, PmapsError
from .kernel.maps import Vma
from .model import Known, Pages, Snapshot

SCHEMA = "pmaps-snapshot/1"
_COLUMNS = ("vpn", "pm", "cat", "kflags", "kcount", "idle")


def snapshot_to_dict(snap: Snapshot) -> dict[str, object]:
    """Everything but the page columns."""
    return {
        "schema": SCHEMA, "pid": snap.pid, "comm": snap.comm, "time": snap.time, "notes": snap.notes,
        "known": snap.known.to_dict(),
        "vmas": [[v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path] for v in snap.vmas],
    }


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write to a temp file in the same directory, fsync, rename: all or nothing."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with_suppress_unlink(tmp)
        raise


def with_suppress_unlink(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def dumps(snap: Snapshot, keep_pfns: bool = False) -> bytes:
    if not keep_pfns and snap.known.pfn:
        snap = snap.without_pfns()
    arrays = {k: getattr(snap.pages, k) for k in _COLUMNS if getattr(snap.pages, k) is not None}
    meta = json.dumps(snapshot_to_dict(snap)).encode()
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(meta, dtype=np.uint8), **arrays)
    return buf.getvalue()


def save(snap: Snapshot, path: str | os.PathLike[str], keep_pfns: bool = False) -> None:
    """Write a snapshot file atomically (0600). PFNs only with keep_pfns."""
    try:
        write_atomic(path, dumps(snap, keep_pfns))
    except OSError as err:
        raise PmapsError(f"cannot write {path}: {err.strerror}", path=str(path)) from err


ADDR_LIMIT = 1 << 64  # VMAs of a 64-bit address space


def decode_vmas(raw: object) -> list[Vma]:
    """VMAs as stored ([start, end, perms, offset, dev, inode, path] lists); ValueError unless they
    are sorted, disjoint, page-aligned and inside the 64-bit address space, as maps lists them."""
    if not isinstance(raw, list):
        raise TypeError("vmas is not a list")
    vmas = [Vma(int(a), int(b), str(p), int(o), str(d), int(i), str(n)) for a, b, p, o, d, i, n in raw]
    prev_end = 0
    for i, v in enumerate(vmas):
        if not (prev_end <= v.start < v.end <= ADDR_LIMIT) or (v.start | v.end) & 0xFFF:
            raise ValueError(f"VMA {i} is out of order or not a valid address range")
        prev_end = v.end
    return vmas


def decode_known(raw: object) -> Known:
    if not isinstance(raw, dict):
        raise TypeError("known is not an object")
    return Known(**{str(k): bool(v) for k, v in raw.items()})


def loads(data: bytes, name: str = "<bytes>") -> Snapshot:
    """Parse a snapshot file's bytes; BadSnapshot on anything malformed."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            cols = {k: z[k] for k in _COLUMNS if k in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as err:
        raise BadSnapshot(f"{name}: not a pmaps snapshot file (or a damaged one)", path=name) from err
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise BadSnapshot(f"{name}: unknown snapshot schema {meta.get('schema') if isinstance(meta, dict) else None!r}",
                          path=name)
    try:
        vmas = decode_vmas(meta["vmas"])
        n = len(cols["vpn"])
        for k, v in cols.items():
            if v.ndim != 1 or len(v) != n:
                raise ValueError(f"column {k} has shape {v.shape}, expected ({n},)")
            if v.dtype.kind not in "uib":
                raise ValueError(f"column {k} holds {v.dtype}, not integers")
        pages = Pages(cols["vpn"].astype(np.uint64), cols["pm"].astype(np.uint64), cols["cat"].astype(np.uint16),
                      cols.get("kflags"), cols.get("kcount"), cols.get("idle"))
        if n > 1 and not (pages.vpn[1:] > pages.vpn[:-1]).all():
            raise ValueError("pages are not in address order")
        known = decode_known(meta["known"])
        snap = Snapshot(int(meta["pid"]), str(meta["comm"]), vmas, pages, known, float(meta["time"]),
                        list(meta.get("notes", [])))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as err:
        raise BadSnapshot(f"{name}: corrupt snapshot ({err})", path=name) from err
    return snap


def load(path: str | os.PathLike[str]) -> Snapshot:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise PmapsError(f"cannot read {path}: {err.strerror}", path=str(path)) from err
    return loads(data, str(path))


def snapshot_chunks(snap: Snapshot) -> Iterator[tuple[int, Pages]]:
    """A snapshot as the (VMA index, Pages) stream renderers take."""
    for i, (lo, hi) in enumerate(snap.bounds().tolist()):
        if hi > lo:
            yield i, snap.pages.take(slice(lo, hi))
