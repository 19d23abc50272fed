"""The files pmaps owns: atomic writes and whole-file reads, with the one translation of file errors."""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import PmapsError

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def file_errors(path: PathLike, verb: str = "read") -> Iterator[None]:
    """OSError on `path` -> PmapsError("cannot VERB PATH: reason"), chained (exit 1)."""
    try:
        yield
    except PmapsError:
        raise
    except OSError as err:
        why = "no such file" if err.errno == errno.ENOENT else (err.strerror or str(err))
        raise PmapsError(f"cannot {verb} {path}: {why}", path=str(path)) from err


def write_atomic(path: PathLike, data: bytes, mode: int = 0o600) -> None:
    """Write to a temp file in the same directory, fsync, rename: all or nothing. OSError escapes
    (callers translate with file_errors)."""
    import tempfile  # not on the start-up path of commands that write nothing

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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_bytes(path: PathLike, data: bytes, mode: int = 0o600) -> None:
    """write_atomic with errors translated: what every writer of pmaps calls."""
    with file_errors(path, "write"):
        write_atomic(path, data, mode)


def load_bytes(path: PathLike) -> bytes:
    """A whole file, errors translated."""
    with file_errors(path, "read"):
        return Path(path).read_bytes()
