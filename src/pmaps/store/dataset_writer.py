"""Writing a fleet dataset (docs/dataset.md): a write's samples file and its ranges file under
ROOT/_ranges published both or neither, locally (hidden names, then links with SIGINT/SIGTERM
held) or on an object store (both uploads held, a failed second taking the first back). The
layout, schema and readers are in store.dataset."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import PmapsError
from .codec import reason
from .dataset import OBJECT_STORES, RANGE_COLUMNS, RANGES_DIR, filesystem, local_path, partition_value, table_bytes
from .files import file_errors, save_bytes

HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then act as they would have: what the block
    publishes is published whole. Their Python handlers are swapped, not masked: a mask holds off
    only the calling thread, and the kernel gives a process's signal to another one (a reader's,
    pyarrow's), whose C handler still has Python raise KeyboardInterrupt here. Off the main
    thread nothing is swapped: Python runs signal handlers in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {}
    for s in HELD:
        h = signal.getsignal(s)
        if h is not None and h is not signal.SIG_IGN:  # None: a handler set outside Python, left alone
            old[s] = signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])  # the handler restored above acts now (KeyboardInterrupt, an exit)


class DatasetWriter:
    """Appends part files under ROOT/host=H/date=D/ (and ROOT/_ranges/host=H/date=D/)."""

    def __init__(self, root: str, host: str) -> None:
        self.root, self.host = root.rstrip("/") or "/", partition_value(host)
        self.local = "://" not in root or root.startswith("file://")
        if self.local:
            self.path = local_path(root)
            self.fs = None
        else:
            self.fs, self.path = filesystem(root)

    def _dir(self, when: float, table: str = "") -> str:
        sub = f"/{table}" if table else ""
        return f"{self.path.rstrip('/')}{sub}/host={self.host}/date={time.strftime('%Y-%m-%d', time.gmtime(when))}"

    def write(self, cols: dict[str, list[Any]], when: float, pid: int, seq: int,
              ranges: dict[str, Any] | Iterable[dict[str, Any]] | None = None) -> tuple[str, int]:
        """One part file holding these rows and, when given, one of the `ranges` table (`ranges` may
        be batches of rows: one row group each, memory one batch), published both or neither
        (`put`). Returns (the samples file's path, the bytes of both)."""
        rdata = table_bytes(ranges, RANGE_COLUMNS) if ranges is not None else None
        return self.put(table_bytes(cols), when, pid, seq, rdata)

    @staticmethod
    def part_name(when: float, pid: int, seq: int) -> str:
        """The file name of a write: the samples file and its ranges file share it."""
        return f"part-{round(when * 1e6)}-{pid}-{os.getpid()}-{seq:06d}.parquet"

    def put(self, samples: bytes, when: float, pid: int, seq: int, ranges: bytes | None = None) -> tuple[str, int]:
        """Publish a write's files (table_bytes of its rows, and of its ranges when given) both or
        neither: an error or a SIGINT/SIGTERM at any moment never leaves a ranges file without its
        samples file, nor the reverse (a query would find ranges of no sample, diff a sample whose
        ranges are missing). The ranges file is published first: only a kill -9 between the two
        can leave it alone. Returns (the samples file's path, the bytes of both)."""
        name = self.part_name(when, pid, seq)
        files = [(self._dir(when, RANGES_DIR), ranges)] if ranges is not None else []
        files.append((self._dir(when), samples))
        if self.fs is None:
            self._put_local(name, files)
        else:
            self._put_remote(name, files)
        return f"{self._dir(when)}/{name}", sum(len(data) for _, data in files)

    def _put_local(self, name: str, files: list[tuple[str, bytes]]) -> None:
        # Each file whole under a hidden name (readers skip dot-files; write_new: temp, fsync), then
        # the two links, with SIGINT/SIGTERM held for them only: the slow part stays interruptible.
        staged: list[str] = []
        try:
            for d, data in files:
                with file_errors(d, "create"):
                    _makedirs(d)
                staged.append(f"{d}/.{name}.{os.urandom(6).hex()}.pending")
                save_bytes(staged[-1], data, 0o600)
            done: list[str] = []
            with signals_held():
                try:
                    for tmp, (d, _) in zip(staged, files):
                        with file_errors(f"{d}/{name}", "write"):
                            os.link(tmp, f"{d}/{name}")  # never replaces: a name no other write has
                        done.append(f"{d}/{name}")
                except BaseException:
                    for path in done:  # the first file without the second: neither
                        with contextlib.suppress(OSError):
                            os.unlink(path)
                    raise
            for d, _ in files:
                _sync_dir(d)
        finally:
            for tmp in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _put_remote(self, name: str, files: list[tuple[str, bytes]]) -> None:
        # An object store has no rename: each object is published on close, so SIGINT/SIGTERM are
        # held for both uploads (their bytes are built; the SDK's timeouts bound the wait), and a
        # failed second upload takes the first object back.
        assert self.fs is not None
        done: list[str] = []
        with signals_held():
            try:
                for d, data in files:
                    if self.fs.type_name not in OBJECT_STORES:  # an object store has no directories: its
                        self.fs.create_dir(d, recursive=True)  # create_dir would add empty marker objects
                    with self.fs.open_output_stream(f"{d}/{name}") as f:
                        f.write(data)
                    done.append(f"{d}/{name}")
            except OSError as e:
                for path in done:
                    with contextlib.suppress(OSError):
                        self.fs.delete_file(path)
                raise PmapsError(f"cannot write {self.root}: {reason(e).splitlines()[0][:300]}") from e


def _makedirs(d: str) -> None:
    """Create `d` and its missing parents 0700 (os.makedirs gives only the last one the mode)."""
    made = d
    parents = []
    while made and not os.path.isdir(made):
        parents.append(made)
        made = os.path.dirname(made)
    for p in reversed(parents):
        os.makedirs(p, mode=0o700, exist_ok=True)


def _sync_dir(d: str) -> None:
    """fsync a directory after links in it (best effort: a crash then keeps the names)."""
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
