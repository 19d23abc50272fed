"""Writing a fleet dataset (docs/dataset.md): a write's samples file and its ranges file under
ROOT/_ranges published both or neither, locally (hidden names, then links with SIGINT/SIGTERM
held) or on an object store (both uploads held, a failed second taking the first back). The
layout, schema and readers are in store.dataset."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import PmapsError
from .codec import reason
from .dataset import OBJECT_STORES, RANGE_COLUMNS, RANGES_DIR, filesystem, local_path, partition_value, table_bytes
from .files import file_errors, kind_of, stage

HELD = (signal.SIGINT, signal.SIGTERM)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


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
        return "/".join([self.path.rstrip("/"), *self._parts(when, table)])

    def _parts(self, when: float, table: str = "") -> list[str]:
        """The directories of a write below ROOT: [_ranges,] host=H, date=D."""
        date = time.strftime("%Y-%m-%d", time.gmtime(when))
        return [*([table] if table else []), f"host={self.host}", f"date={date}"]

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
        files = ([(RANGES_DIR, ranges)] if ranges is not None else []) + [("", samples)]  # (table, bytes)
        if self.fs is None:
            self._put_local(name, when, files)
        else:
            self._put_remote(name, [(self._dir(when, t), data) for t, data in files])
        return f"{self._dir(when)}/{name}", sum(len(data) for _, data in files)

    def _put_local(self, name: str, when: float, files: list[tuple[str, bytes]]) -> None:
        # Each file whole under a hidden name (readers skip dot-files; temp, fsync), then the two
        # links, with SIGINT/SIGTERM held for them only: the slow part stays interruptible. Every
        # step is relative to a directory descriptor opened from ROOT down without following a
        # link (_walk): a symlink below ROOT is refused before anything is written (ROOT itself
        # may be one: the user's choice), and one swapped in meanwhile cannot redirect a write.
        dirs = [(self._dir(when, t), self._parts(when, t)) for t, _ in files]
        with file_errors(self.path, "create"):
            _makedirs(self.path)
        fds: list[int] = []
        staged: list[tuple[int, str]] = []
        try:
            with file_errors(self.path, "open"):
                root = os.open(self.path, DIR_FLAGS)
            try:
                for _, parts in dirs:  # every existing directory checked before any is made
                    _walk(root, parts, self.path, create=False)
                for _, parts in dirs:
                    fd = _walk(root, parts, self.path, create=True)
                    assert fd is not None
                    fds.append(fd)
            finally:
                os.close(root)
            for fd, (d, _), (_, data) in zip(fds, dirs, files):
                staged.append((fd, f".{name}.{os.urandom(6).hex()}.pending"))
                with file_errors(f"{d}/{name}", "write"):
                    stage(fd, staged[-1][1], data)
            done: list[tuple[int, str]] = []
            with signals_held():
                try:
                    for (fd, tmp), (d, _) in zip(staged, dirs):
                        with file_errors(f"{d}/{name}", "write"):
                            # never replaces: a name no other write has
                            os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                        done.append((fd, name))
                except BaseException:
                    for fd, path in done:  # the first file without the second: neither
                        with contextlib.suppress(OSError):
                            os.unlink(path, dir_fd=fd)
                    raise
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.fsync(fd)  # best effort: a crash then keeps the names
        finally:
            for fd, tmp in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)
            for fd in fds:
                os.close(fd)

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


def _walk(root: int, parts: list[str], shown: str, create: bool) -> int | None:
    """With `create`, a descriptor of the directory root/parts[0]/parts[1]/..., each made 0700
    when missing and entered without following a link (O_NOFOLLOW); without it, None once those
    that exist are checked. PmapsError (exit 1) at a symlink or a file that is not a directory: a
    dataset's directories below ROOT are never links out of it."""
    fd = root
    try:
        for part in parts:
            shown = f"{shown.rstrip('/')}/{part}"
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            try:
                nfd = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create:
                    raise
                break  # the rest is made later
            except OSError as e:  # ELOOP: a symlink (O_NOFOLLOW); ENOTDIR: a file
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                what = "a regular file" if stat.S_ISREG(mode) else kind_of(mode)
                raise PmapsError(f"cannot write into {shown}: it is {what}, not a directory (a dataset's "
                                 "directories below ROOT must be real ones)", path=shown) from None
            if fd != root:
                os.close(fd)
            fd = nfd
    except BaseException as e:
        if fd != root:
            os.close(fd)
        if isinstance(e, OSError):
            raise PmapsError(f"cannot write into {shown}: {e.strerror or e}", path=shown) from e
        raise
    if create:
        return fd
    if fd != root:
        os.close(fd)
    return None
