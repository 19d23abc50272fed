"""The one codec of what every pmaps file stores besides its columns: VMAs and Known as JSON, and
numpy columns plus a JSON document in one .npz (snapshots and system scans). Pure."""
from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from ..kernel.maps import Vma
from ..model import Known

ADDR_LIMIT = 1 << 64  # VMAs of a 64-bit address space
# What a malformed file can raise while it is decoded: every reader turns these into BadSnapshot.
DECODE_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, OverflowError,
                 UnicodeDecodeError, zipfile.BadZipFile)


def encode_vmas(vmas: list[Vma]) -> list[list[object]]:
    return [[v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path] for v in vmas]


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


def encode_known(known: Known) -> dict[str, bool]:
    return known.to_dict()


def decode_known(raw: object) -> Known:
    if not isinstance(raw, dict):
        raise TypeError("known is not an object")
    return Known(**{str(k): bool(v) for k, v in raw.items()})


def pack_npz(meta: dict[str, Any], columns: dict[str, np.ndarray | None]) -> bytes:
    """Columns as arrays (None left out) and `meta` as a JSON byte array, compressed."""
    arrays = {k: v for k, v in columns.items() if v is not None}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def unpack_npz(data: bytes, schema: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, columns) of a pack_npz file; ValueError when the schema is not `schema`. Columns are
    checked to be 1-D integer arrays of one length."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        cols = {k: z[k] for k in z.files if k != "meta"}
    if not isinstance(meta, dict) or meta.get("schema") != schema:
        raise ValueError(f"schema {meta.get('schema') if isinstance(meta, dict) else None!r}, not {schema}")
    n = len(cols["vpn"]) if "vpn" in cols else 0
    for k, v in cols.items():
        if v.ndim != 1 or len(v) != n:
            raise ValueError(f"column {k} has shape {v.shape}, expected ({n},)")
        if v.dtype.kind not in "uib":
            raise ValueError(f"column {k} holds {v.dtype}, not integers")
    return meta, cols
