"""The files pmaps owns: safe writes and bounded reads, with the one translation of file errors.

pmaps runs as root against other users' processes, and its output paths may be typed by anyone:
every writer creates a new file under a temporary name (O_EXCL, O_NOFOLLOW) and renames it into
place, never replaces what is not a regular file (a device node, a FIFO, a symlink, a directory),
replaces an existing regular file only when asked (`force`), and never creates a missing parent
directory. Every reader takes regular files only, opened without blocking (a FIFO would hang the
open), and refuses one larger than its cap before reading a byte of it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadSnapshot, OutputExists, PmapsError

PathLike = str | os.PathLike[str]
READ_CAP = 1 << 30  # bytes: no snapshot or sample of pmaps' is this large; a bigger file is not ours


def _why(err: OSError) -> str:
    if err.errno == errno.ENOENT:
        return "no such file or directory"
    if err.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return err.strerror or str(err)


@contextlib.contextmanager
def file_errors(path: PathLike, verb: str = "read") -> Iterator[None]:
    """OSError on `path` -> PmapsError("cannot VERB PATH: reason"), chained (exit 1)."""
    try:
        yield
    except PmapsError:
        raise
    except OSError as err:
        raise PmapsError(f"cannot {verb} {path}: {_why(err)}", path=str(path)) from err


def kind_of(mode: int) -> str:
    """What a file is, in words, for refusals."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _dir_fd(path: Path) -> int:
    """The parent directory of an output path, opened (never created: a typo must not make /nonexistent)."""
    return os.open(str(path.parent), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def check_target(path: PathLike, force: bool = False, dir_fd: int | None = None) -> bool:
    """Whether `path` exists; PmapsError when it must not be replaced. The final component is
    looked at, never followed (lstat): a symlink is refused whatever it points to."""
    p = Path(path)
    try:
        st = os.lstat(p.name if dir_fd is not None else p, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise PmapsError(f"cannot write {path}: it is {kind_of(st.st_mode)}, not a regular file: "
                         "pmaps replaces only regular files", path=str(path))
    if not force:
        raise OutputExists(f"{path} exists: use --force to replace it", path=str(path))
    return True


def check_output(path: PathLike, force: bool = False) -> None:
    """Before any work: the refusals write_new would make at the end (a missing directory, an
    existing file without `force`, something that is not a regular file), so that a command does
    not scan and print for a minute and then fail. write_new checks again when it writes."""
    with file_errors(path, "write"):
        dfd = _dir_fd(Path(path))
    try:
        check_target(path, force, dfd)
    finally:
        os.close(dfd)


def stage(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to a new file `name` in the directory `dir_fd` (never through a link, never over
    a name that exists), `mode` exactly, fsync'd: the temp file a caller then links into place."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what pmaps promises
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: PathLike, data: bytes, mode: int = 0o600, force: bool = False) -> None:
    """Write `data` to `path` all or nothing: a new temp file (O_EXCL|O_NOFOLLOW, `mode`) in the
    same directory, fsync, then into place. Without `force` the final step is link(2), which
    fails if the name appeared meanwhile; with it, rename(2) over a regular file (checked just
    before). OSError escapes (callers translate with file_errors)."""
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    dfd = _dir_fd(p)
    try:
        check_target(p, force, dfd)
        tmp = f".{p.name[:200]}.{os.urandom(6).hex()}.tmp"
        try:
            stage(dfd, tmp, data, mode)  # (a failed write leaves its file: unlinked below)
            if not force:
                try:
                    os.link(tmp, p.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileExistsError:
                    check_target(p, False, dfd)  # raises the right refusal
                    raise
                os.unlink(tmp, dir_fd=dfd)
            else:
                check_target(p, True, dfd)
                os.rename(tmp, p.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)


def write_atomic(path: PathLike, data: bytes, mode: int = 0o600) -> None:
    """Replace a file of pmaps' own (a recording's manifest) all or nothing: write_new with force."""
    write_new(path, data, mode, force=True)


def save_bytes(path: PathLike, data: bytes, mode: int = 0o600, force: bool = False) -> None:
    """write_new with errors translated: what every writer of pmaps calls."""
    with file_errors(path, "write"):
        write_new(path, data, mode, force)


def read_regular(path: PathLike, cap: int = READ_CAP, what: str = "pmaps file") -> bytes:
    """A whole regular file of at most `cap` bytes. Opened O_NONBLOCK (a FIFO would block the
    open), checked with fstat before reading: a device, FIFO or directory is BadSnapshot, as is a
    file over the cap; OS errors are translated (exit 1)."""
    with file_errors(path, "read"):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            _check_stat(os.fstat(fd), path, cap, what)
            chunks, left = [], cap + 1
            while left > 0:
                b = os.read(fd, min(left, 1 << 24))
                if not b:
                    break
                chunks.append(b)
                left -= len(b)
            if left <= 0:  # it grew while read
                raise BadSnapshot(f"{path}: more than a {what} can be ({cap} bytes)", path=str(path))
            return b"".join(chunks)
        finally:
            os.close(fd)


def check_regular(path: PathLike, cap: int, what: str) -> None:
    """For a file another library opens by name (ssl's certificate and key): that it is a regular
    file of at most `cap` bytes now, as read_regular checks (a FIFO would hang the open, /dev/zero
    would be read until memory runs out)."""
    with file_errors(path, "read"):
        st = os.stat(path)
    _check_stat(st, path, cap, what)


def _check_stat(st: os.stat_result, path: PathLike, cap: int, what: str) -> None:
    """BadSnapshot unless `st` is of a regular file of at most `cap` bytes."""
    if not stat.S_ISREG(st.st_mode):
        raise BadSnapshot(f"{path}: {kind_of(st.st_mode)}, not a {what}", path=str(path))
    if st.st_size > cap:
        raise BadSnapshot(f"{path}: {st.st_size} bytes, more than a {what} can be ({cap})", path=str(path))


def load_bytes(path: PathLike, cap: int = READ_CAP) -> bytes:
    """A whole regular file, errors translated."""
    return read_regular(path, cap)
