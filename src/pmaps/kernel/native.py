"""The optional compiled core: `_kpage`, built from _kpage.c by `pip install .` when the machine has
a C compiler and Python's headers. It does kpage's per-batch work (the lookup plan, the span reads)
top's matching pagemap reads (pagemap.read_matching) and procfs.read_chunks' loops of reads with
the GIL released, so that the reader
threads and the renderer run at once, and the columns of a maps text (maps.decode_table) in one
pass; the pure Python/numpy paths in kpage.py, pagemap.py and maps.py give the same results and
are used when the core is missing or PMAPS_PURE is set. No numpy here: `pmaps --version` says
which path runs."""
from __future__ import annotations

import os
from typing import Protocol

PURE_ENV = "PMAPS_PURE"


class Core(Protocol):
    """What _kpage.c exports (see its comments for the contracts)."""

    def plan(self, pfns: object, gap: int, index: object, /) -> tuple[bytes, bytes]: ...

    def pread_spans(self, fd: int, buf: object, off: object, pos: object, size: object, /) -> None: ...

    def read_matching(self, fd: int, starts: object, ends: object, gap: int, pfns: object, /
                      ) -> tuple[bytes, bytes] | None: ...

    def maps_columns(self, data: object, /) -> tuple[bytearray, bytearray] | None: ...

    def fill(self, fd: int, buf: object, at: int, room: int, /) -> int: ...


def load() -> Core | None:
    """The compiled core, or None: not built, or PMAPS_PURE set (non-empty)."""
    if os.environ.get(PURE_ENV):
        return None
    try:
        from . import _kpage
    except ImportError:
        return None
    return _kpage


def describe() -> str:
    """Which path reads kpageflags and kpagecount, for `pmaps --version`."""
    if os.environ.get(PURE_ENV):
        return f"pure Python: {PURE_ENV} is set"
    return "compiled core" if load() is not None else "pure Python: the compiled core is not built"
