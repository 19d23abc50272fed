"""Writing a recording (store/recording.py has the format and the readers): each sample file and then
the manifest, each atomically, into a directory of the user's that `Recorder.open` makes or checks."""
from __future__ import annotations

import errno
import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadSnapshot, OutputExists, PmapsError
from ..kernel.maps import VmaTable
from ..model import Sample
from .files import kind_of, save_bytes
from .recording import (
    MANIFEST,
    RECORDING_SCHEMA,
    SAMPLE_RE,
    PackedVmas,
    check_sample,
    import_arrow,
    sample_bytes,
    use_system_allocator,
)


def sample_name(seq: int) -> str:
    return f"sample-{seq:06d}.parquet"


@dataclass
class Recorder:
    """Writes a recording directory: each sample and then the manifest, each atomically."""

    path: Path
    pid: int
    comm: str
    interval: float
    with_pfn: bool = False
    # use_system_allocator() before the first sample is written. For a command that owns its
    # process. With prepare(), pyarrow is imported on its helper thread during the first sample's
    # reads: with the compiled core the reader threads no longer want the GIL back after every
    # read (with Python's own reads, an import there slowed them as much as it saved), and the
    # peak RSS of record --count 1 of 65,531 VMAs stayed 95 MB.
    system_allocator: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)
    # The last sample's VMAs, encoded and deflated: a sample whose maps read did not change
    # carries the same table (Process.refresh_table), and its VMAs are not encoded again.
    _vmas: PackedVmas | None = field(default=None, init=False, repr=False)
    _packing: tuple[threading.Thread, list[PackedVmas | BaseException]] | None = field(
        default=None, init=False, repr=False)

    def prepare(self, table: VmaTable) -> None:
        """Start packing `table`'s VMAs (PackedVmas.of) on a helper thread while the first sample
        is read, then (system_allocator) import pyarrow there: `add` takes the VMAs when that
        sample carries this table (most of the work is numpy and zlib, which let go of the GIL)."""
        box: list[PackedVmas | BaseException] = []

        def work() -> None:
            try:
                box.append(PackedVmas.of(table))
                if self.system_allocator:
                    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
                    import_arrow()
            except BaseException as e:  # the sample packs its own in add
                box.append(e)

        t = threading.Thread(target=work, name="pmaps-pack-vmas", daemon=True)
        t.start()
        self._packing = (t, box)

    def _prepared(self, table: VmaTable) -> PackedVmas | None:
        if self._packing is None:
            return None
        t, box = self._packing
        self._packing = None
        t.join()
        got = box[0] if box else None
        return got if isinstance(got, PackedVmas) and got.table is table else None

    def open(self) -> Recorder:
        """Create the directory (0700), or take an existing empty one of ours (made 0700 too).

        Never created: a missing parent (a typo must not make /nonexistent). Refused: a symlink
        (the final component is never followed), anything that is not a directory, a directory
        with anything in it (`-o .` or `-o /tmp` must not chmod a directory that others use, nor
        mix a recording with other files), and an empty directory another user owns (root would
        fill it with files that user cannot read: choose a directory of your own).
        """
        p = self.path
        try:
            p.mkdir(mode=0o700)
        except FileExistsError:
            try:
                st = os.lstat(p)
            except OSError as err:
                raise PmapsError(f"cannot use {p}: {err.strerror}", path=str(p)) from err
            if not stat.S_ISDIR(st.st_mode):
                raise PmapsError(f"cannot create {p}: it exists and is {kind_of(st.st_mode)}, not a directory",
                                 path=str(p)) from None
            try:
                names = [x.name for x in p.iterdir()]
            except OSError as err:
                raise PmapsError(f"cannot read {p}: {err.strerror}", path=str(p)) from err
            if any(SAMPLE_RE.match(n) for n in names):
                raise OutputExists(f"{p} already holds a recording: choose a new directory") from None
            if names:
                raise OutputExists(f"{p} is not empty: choose a new or empty directory") from None
            if st.st_uid != os.geteuid():
                raise OutputExists(f"{p} belongs to uid {st.st_uid}, not to this user: choose a directory of "
                                   "your own") from None
        except OSError as err:
            why = "its parent directory does not exist" if err.errno == errno.ENOENT else err.strerror
            raise PmapsError(f"cannot create {p}: {why}", path=str(p)) from err
        try:
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
        except OSError as err:
            raise PmapsError(f"cannot use {p}: {err.strerror}", path=str(p)) from err
        self.manifest = {"schema": RECORDING_SCHEMA, "pid": self.pid, "comm": self.comm, "interval": self.interval,
                         "pfn": self.with_pfn, "started": time.time(), "samples": [], "end": None}
        self._write_manifest()
        return self

    def add(self, s: Sample) -> int:
        """Write one sample file, then the manifest; returns the sample's size in bytes.
        BadSnapshot, and nothing written, when the sample fails the loader's checks (a torn read)."""
        try:
            check_sample(s)
        except ValueError as err:
            raise BadSnapshot(f"sample {s.seq} is inconsistent ({err})") from None
        if self.system_allocator:
            use_system_allocator()
            self.system_allocator = False
        if self._vmas is None or self._vmas.table is not s.table:
            self._vmas = self._prepared(s.table) or PackedVmas.of(s.table)
        data = sample_bytes(s, self._vmas)
        name = sample_name(s.seq)
        save_bytes(self.path / name, data)
        self.manifest["samples"].append({"file": name, "seq": s.seq, "time": s.time, "ranges": len(s),
                                         "bytes": len(data), "ms": round(s.cost * 1000, 2)})
        self._write_manifest()
        return len(data)

    def finish(self, reason: str, note: str = "") -> None:
        self.manifest["end"] = {"time": time.time(), "reason": reason, "note": note}
        self._write_manifest()

    def _write_manifest(self) -> None:
        save_bytes(self.path / MANIFEST, (json.dumps(self.manifest, indent=1) + "\n").encode(), force=True)
