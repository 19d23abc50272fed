"""What the dataset readers (`pmaps query`, `diff ROOT`, `heatmap ROOT`) take from ROOT's tree, which
may come from another machine or an attacker (docs/dataset.md, "Reading hostile datasets").

They walk three levels, `host=H/date=D/part-*.parquet` (the same under `_ranges/`), and in those
places trust nothing: a name with `=` is a partition and must be one pmaps writes (`check_name`),
a partition must be a real directory and a part file a regular file (never a symlink, a FIFO, a
device). Locally each directory is entered from ROOT without following a link (O_NOFOLLOW, as
the writer's `_walk`), and every file pyarrow reads is opened the same way (`no_follow_fs`):
O_NONBLOCK, looked at with lstat before the open and fstat after it, so a link or FIFO swapped
in after the listing is refused too, never followed nor waited on. ROOT itself may be a link
(the user named it). Anything wrong is BadSnapshot (exit 6), one line naming the path from ROOT.
Names with no `=` (dot-files, temp files, README) are not the dataset's and are left alone.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import re
import stat
from collections.abc import Sequence
from typing import Any

from ..errors import BadSnapshot, PmapsError
from ..safetext import printable
from .dataset import PART_RE, _pyarrow, filesystem
from .files import kind_of

KEYS = ("host", "date")  # the partition keys, one a level: ROOT/host=H/date=D/part-...
# A host value is what the writer's partition_value makes of a node name (uname's nodename is at
# most 64 bytes, __NEW_UTS_LEN): no '/', '%' (pyarrow's Hive parsing would URL-decode it), '='
# or control character can be in it. A date is the UTC date the writer formats (%Y-%m-%d).
HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LAYOUT = "ROOT/host=H/date=YYYY-MM-DD/part-*.parquet"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
REGULAR, DIRECTORY = "a regular file", "a directory"
REAL = " (below ROOT the readers follow no link and read only regular files)"


def check_name(key: str, value: str, want: str) -> str:
    """Why `key=value` cannot be the partition `want` of a dataset pmaps writes ('' when it can)."""
    if key != want:
        if key in KEYS:
            return f"repeats or misplaces the partition key {key!r} (a dataset is {LAYOUT})"
        return f"is not a partition of a pmaps dataset (only host= and date=: {LAYOUT})"
    if want == "host" and not HOST_RE.fullmatch(value):
        return "is not a host partition pmaps writes (host=: 1 to 64 of A-Za-z0-9._-)"
    if want == "date":
        try:
            if DATE_RE.fullmatch(value):
                dt.date.fromisoformat(value)
                return ""
        except ValueError:
            pass
        return "is not a date partition pmaps writes (date=YYYY-MM-DD, a calendar date)"
    return ""


def take(root: str, where: list[str], level: int, name: str, kind: str) -> bool:
    """Whether the entry `name` of the directory ROOT/where... (at this level: 0 a table's base,
    1 a host=, 2 a date=) is the dataset's: a valid partition directory at levels 0 and 1, a part
    file at level 2. False for names that are none of its own; BadSnapshot for a partition that
    is not valid or not a directory, a part file that is not a regular file, or a partition below
    date=."""
    shown = printable("/".join([*where, name]))
    why = ""
    if "=" in name:
        key, _, value = name.partition("=")
        why = check_name(key, value, KEYS[level]) if level < len(KEYS) else \
            f"is a partition below date= (a dataset is {LAYOUT})"
        if not why and kind != DIRECTORY:
            why = f"is {kind}, not a directory{REAL}"
    elif level < len(KEYS) or not PART_RE.fullmatch(name):
        return False
    elif kind != REGULAR:
        why = f"is {kind}, not a regular file{REAL}"
    if why:
        raise BadSnapshot(f"{root}: corrupt dataset: {shown} {why}", path=root)
    return True


def _kind(mode: int) -> str:
    return REGULAR if stat.S_ISREG(mode) else kind_of(mode)


def _lkind(name: str, dir_fd: int) -> str:
    """What the entry `name` of the directory `dir_fd` is (lstat), in words."""
    try:
        return _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return "gone or unreadable"


class Tree:
    """A dataset ROOT's part files, found as `take` says: locally by a walk from ROOT through
    directory descriptors (O_NOFOLLOW below it), on an object store (no links there) by one
    recursive listing. `fs` reads the files: locally `no_follow_fs`, else the store's."""

    def __init__(self, root: str) -> None:
        self.root = root
        fs, self.path = filesystem(root)
        self.local = fs.type_name == "local"
        self.fs = no_follow_fs(self.path, root) if self.local else fs
        self._all: list[Any] | None = None  # an object store's listing of ROOT, once read

    def hosts(self) -> list[str]:
        """The host values of the samples table (its partitions in ROOT), sorted."""
        if self.local:
            fd = self._enter([])
            if fd is None:
                return []
            try:
                names = [name for name, mode, _ in self._entries(fd, []) if take(self.root, [], 0, name, _kind(mode))]
            finally:
                os.close(fd)
        else:
            _, _, pafs = _pyarrow()
            infos = self._listing(self.path, recursive=False)
            names = [i.base_name for i in infos if take(self.root, [], 0, i.base_name, _info_kind(i, pafs))]
        return sorted(n.split("=", 1)[1] for n in names)

    def parts(self, table: str = "", host: str | None = None) -> list[Any]:
        """The part files (pyarrow FileInfos, sorted by path) of the samples table (table "") or
        ranges (RANGES_DIR), of every host or of one."""
        _, _, pafs = _pyarrow()
        base = [table] if table else []
        top = [f"host={host}"] if host is not None else []
        if host is not None:
            take(self.root, base, 0, top[0], DIRECTORY)  # the name's checks (its kind: when entered)
        out: list[Any] = []
        if self.local:
            fd = self._enter(base + top)
            if fd is not None:
                try:
                    self._walk(fd, base + top, len(top), out)
                finally:
                    os.close(fd)
        else:
            d = "/".join([self.path.rstrip("/"), *base, *top])
            if host is None:  # every host's: from one listing of ROOT (both tables)
                self._all = self._all if self._all is not None else self._listing(self.path, recursive=True)
                infos = [i for i in self._all if i.path.startswith(d + "/")]
            else:
                infos = self._listing(d, recursive=True)
            for i in infos:
                rel = i.path[len(d) + 1:].split("/")
                names = rel[:len(KEYS) + 1 - len(top)]  # deeper: only the names of the three levels count
                kinds = [DIRECTORY] * (len(names) - 1) + [_info_kind(i, pafs) if names == rel else DIRECTORY]
                if all(take(self.root, base + top + names[:k], len(top) + k, n, kind)
                       for k, (n, kind) in enumerate(zip(names, kinds))) and len(top) + len(rel) == len(KEYS) + 1:
                    out.append(i)
        return sorted(out, key=lambda i: str(i.path))

    def _listing(self, d: str, recursive: bool) -> list[Any]:
        _, _, pafs = _pyarrow()
        try:
            return list(self.fs.get_file_info(pafs.FileSelector(d, recursive=recursive, allow_not_found=True)))
        except OSError as e:
            raise PmapsError(f"cannot read dataset {self.root}: {str(e).splitlines()[0][:300]}") from None

    def _walk(self, fd: int, rel: list[str], level: int, out: list[Any]) -> None:
        """Add the part files below the directory `fd` (ROOT/rel, at this partition level)."""
        _, _, pafs = _pyarrow()
        for name, mode, size in self._entries(fd, rel):
            if not take(self.root, rel, level, name, _kind(mode)):
                continue
            if level == len(KEYS):
                out.append(pafs.FileInfo("/".join([self.path.rstrip("/"), *rel, name]), pafs.FileType.File, size=size))
                continue
            sub = self._enter([name], fd, rel)
            if sub is not None:
                try:
                    self._walk(sub, [*rel, name], level + 1, out)
                finally:
                    os.close(sub)

    def _enter(self, parts: list[str], fd: int | None = None, above: Sequence[str] = ()) -> int | None:
        """A descriptor of the directory parts[...] below `fd` (ROOT when None: opened following a
        link, the user's choice), each entered without following one; None when it is gone."""
        shown = list(above)
        try:
            cur = os.open(self.path, DIR_FLAGS) if fd is None else os.dup(fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise PmapsError(f"cannot read dataset {self.root}: {e.strerror or e}", path=self.root) from None
        try:
            for part in parts:
                shown.append(part)
                try:
                    nfd = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=cur)
                except FileNotFoundError:
                    os.close(cur)
                    return None
                except OSError as e:  # ELOOP: a symlink (O_NOFOLLOW); ENOTDIR: not a directory
                    what = e.strerror or str(e)
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise BadSnapshot(f"{self.root}: corrupt dataset: {printable('/'.join(shown))} is "
                                          f"{_lkind(part, cur)}, not a directory{REAL}", path=self.root) from None
                    raise PmapsError(f"cannot read dataset {self.root}: {printable('/'.join(shown))}: {what}",
                                     path=self.root) from None
                os.close(cur)
                cur = nfd
        except BaseException:
            os.close(cur)
            raise
        return cur

    def _entries(self, fd: int, rel: list[str]) -> list[tuple[str, int, int]]:
        """(name, lstat mode, size) of each entry of the directory `fd` (ROOT/rel)."""
        out = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed since it was listed
                    out.append((e.name, st.st_mode, st.st_size))
        except OSError as e:
            where = printable("/".join(rel)) or "ROOT"
            raise PmapsError(f"cannot read dataset {self.root}: {where}: {e.strerror or e}", path=self.root) from None
        return out


def _info_kind(info: Any, pafs: Any) -> str:
    """What an object store's listing entry is, in `take`'s words."""
    if info.type == pafs.FileType.Directory:
        return DIRECTORY
    return REGULAR if info.type == pafs.FileType.File else "not a regular file"


def open_below(top: str, path: str, root: str = "") -> int:
    """A read descriptor of the regular file `path` below the directory `top`: each component below
    top entered without following a link, the file looked at (lstat) before it is opened
    (O_NOFOLLOW | O_NONBLOCK: a FIFO swapped in meanwhile cannot block the open) and refused after
    (fstat) unless it is that regular file. BadSnapshot naming the path from top otherwise (and
    `root`, top as the user typed it)."""
    root = root or top
    rel = path[len(top.rstrip("/")) + 1:].split("/") if path.startswith(top.rstrip("/") + "/") else []
    shown = printable("/".join(rel) or path)
    if not rel or "" in rel or "." in rel or ".." in rel:
        raise BadSnapshot(f"{root}: corrupt dataset: {shown} is not a file below ROOT", path=root)
    why = ""
    fd = os.open(top, DIR_FLAGS)
    try:
        for part in rel[:-1]:
            try:
                nfd = os.open(part, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                why = "is below a link or a file, not a directory"
                break
            os.close(fd)
            fd = nfd
        if not why:
            st = os.stat(rel[-1], dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                why = f"is {_kind(st.st_mode)}, not a regular file"
            else:
                ffd = os.open(rel[-1], FILE_FLAGS, dir_fd=fd)
                got = os.fstat(ffd)
                if (got.st_dev, got.st_ino) == (st.st_dev, st.st_ino) and stat.S_ISREG(got.st_mode):
                    return ffd
                os.close(ffd)
                why = "was replaced while it was opened"
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        why = "is a symbolic link, not a regular file"
    finally:
        os.close(fd)
    raise BadSnapshot(f"{root}: corrupt dataset: {shown} {why}{REAL}", path=root)


_FS_CLASS: list[Any] = []


def no_follow_fs(top: str, root: str = "") -> Any:
    """A read-only pyarrow FileSystem of the files below the local directory `top` (ROOT, typed as
    `root`) that opens each with `open_below` (pyarrow then reads it natively: /proc/self/fd/N
    reopens that very file). Only the readers' opens are its: listing is Tree's."""
    pa, _, pafs = _pyarrow()
    if not _FS_CLASS:

        class NoFollow(pafs.FileSystemHandler):  # type: ignore[name-defined]
            def __init__(self, top: str, root: str) -> None:
                self.top, self.root = top, root

            def __eq__(self, other: object) -> bool:
                return isinstance(other, NoFollow) and other.top == self.top

            def __hash__(self) -> int:
                return hash(self.top)

            def get_type_name(self) -> str:
                return "pmaps-no-follow"

            def normalize_path(self, path: str) -> str:
                return path

            def get_file_info(self, paths: list[str]) -> list[Any]:
                out = []
                for p in paths:
                    try:
                        st = os.lstat(p)
                    except FileNotFoundError:
                        out.append(pafs.FileInfo(p, pafs.FileType.NotFound))
                        continue
                    kind = pafs.FileType.File if stat.S_ISREG(st.st_mode) else \
                        pafs.FileType.Directory if stat.S_ISDIR(st.st_mode) else pafs.FileType.Unknown
                    out.append(pafs.FileInfo(p, kind, size=st.st_size))
                return out

            def get_file_info_selector(self, selector: Any) -> list[Any]:
                raise NotImplementedError("pmaps lists a dataset with dataset_checks.Tree")

            def open_input_file(self, path: str) -> Any:
                fd = open_below(self.top, path, self.root)
                try:
                    return pa.OSFile(f"/proc/self/fd/{fd}")
                except OSError:  # no /proc: Python reads it (slower, but the same file)
                    return pa.PythonFile(os.fdopen(os.dup(fd), "rb"), mode="r")
                finally:
                    os.close(fd)

            def open_input_stream(self, path: str) -> Any:
                return self.open_input_file(path)

            def _read_only(self, *args: Any) -> Any:
                raise OSError(errno.EROFS, "a dataset is read here, never written")

            create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
            move = copy_file = open_output_stream = open_append_stream = _read_only

        _FS_CLASS.append(NoFollow)
    return pafs.PyFileSystem(_FS_CLASS[0](top, root or top))

