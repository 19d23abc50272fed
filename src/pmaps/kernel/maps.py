"""/proc/PID/maps (Documentation/filesystems/proc.rst, "The /proc/PID/maps file"): the pure decoder
and the one reader every collector uses."""
from __future__ import annotations

import re
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..errors import KernelThread
from ..numeric import PAGE_SHIFT, PAGE_SIZE, distinct
from . import procfs
from .native import Core
from .native import load as load_core

__all__ = ["PAGE_SHIFT", "PAGE_SIZE", "MapsFormatError", "Vma", "VmaTable", "decode_maps", "decode_maps_line",
           "decode_table", "read_maps", "read_table"]


class Vma(NamedTuple):
    """One line of /proc/PID/maps (a named tuple: cheap to build by the ten thousand)."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str  # "MAJ:MIN" in hex, as the kernel prints it
    inode: int
    path: str = ""

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def pgoff(self) -> int:
        """File page index of the VMA's first page (offset / PAGE_SIZE)."""
        return self.offset >> PAGE_SHIFT

    @property
    def size(self) -> int:
        return self.end - self.start

    def maps_line(self) -> str:
        """The line as /proc/PID/maps prints it.

        fs/proc/task_mmu.c show_vma_header_prefix() then seq_pad() to column 73
        (25 + 6 * sizeof(void *) - 1 on 64-bit) before the name.
        """
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode} "
        if not self.path:
            return head.rstrip()
        return head.ljust(72) + " " + self.path


class MapsFormatError(ValueError):
    """A maps line that does not parse."""


def decode_maps_line(line: str) -> Vma:
    parts = line.split(None, 5)
    if len(parts) < 5:
        raise MapsFormatError(f"short maps line: {line!r}")
    try:
        lo, hi = parts[0].split("-", 1)
        return Vma(
            start=int(lo, 16),
            end=int(hi, 16),
            perms=parts[1],
            offset=int(parts[2], 16),
            dev=parts[3],
            inode=int(parts[4]),
            # The path keeps inner spaces and a " (deleted)" suffix; only the padding goes.
            path=parts[5].rstrip("\n") if len(parts) > 5 else "",
        )
    except ValueError as err:
        raise MapsFormatError(f"bad maps line: {line!r}") from err


_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) (\S+) (\d+) *(.*)$", re.M)


def decode_maps(data: bytes) -> list[Vma]:
    """All VMAs of a maps file, in address order."""
    return decode_table(data).vmas


def _decode_maps(data: bytes) -> list[Vma]:
    text = data.decode("utf-8", "surrogateescape")
    vmas = [Vma(int(a, 16), int(b, 16), p, int(o, 16), d, int(i), n) for a, b, p, o, d, i, n in _LINE.findall(text)]
    if len(vmas) != text.count("\n") + (0 if text.endswith("\n") or not text else 1):
        # A line the fast pattern did not take: parse line by line, to report it.
        return [decode_maps_line(ln) for ln in text.splitlines() if ln.strip()]
    return vmas


def maps_lines(data: bytes, vmas: list[Vma]) -> list[str] | None:
    """The lines of a maps read as the kernel printed them, one per VMA of decode_maps(data); None
    when they do not line up one to one. Printing a line back costs nothing; rebuilding it from a
    Vma costs 2 us, which a process of 65,000 VMAs notices."""
    lines = data.decode("utf-8", "surrogateescape").splitlines()
    return lines if len(lines) == len(vmas) else None


def read_table(pid: int, *, started: bool = False, data: bytes | None = None) -> VmaTable:
    """read_maps as a VmaTable (columns; the lines as read); `data`: the maps text, already read
    (procfs.take_ahead)."""
    table = decode_table(data or procfs.read_file(pid, "maps", started=started))
    if not len(table):
        _checked(pid, [], started)
    return table


# A VMA that can hold file or shmem pages: an inode, or shared (the fourth perms letter "s").
_FILE_LINE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (?:\S{3}s \S+ \S+ \d+|\S{4} \S+ \S+ [1-9]\d*)(?: .*)?$", re.M)


def decode_file_vmas(data: bytes) -> list[Vma]:
    """The VMAs of a maps file that have an inode or are shared, in address order: the others
    are skipped before they are decoded (a process of 65,000 anonymous VMAs costs one regex pass)."""
    text = data.decode("utf-8", "surrogateescape")
    return decode_maps("\n".join(_FILE_LINE.findall(text)).encode("utf-8", "surrogateescape"))


def read_file_vmas(pid: int, *, started: bool = False) -> list[Vma]:
    """decode_file_vmas of the process's maps now (errors as read_maps)."""
    data = procfs.read_file(pid, "maps", started=started)
    if not data.strip():
        _checked(pid, [], started)
    return decode_file_vmas(data)


def read_maps(pid: int, *, started: bool = False) -> list[Vma]:
    """The process's VMAs now. A kernel thread or a zombie has no mm: maps reads empty (proc.rst),
    which becomes KernelThread, ZombieProcess or ProcessGone here."""
    return _checked(pid, decode_maps(procfs.read_file(pid, "maps", started=started)), started)


def _checked(pid: int, vmas: list[Vma], started: bool) -> list[Vma]:
    if not vmas:
        if not started and procfs.is_kernel_thread(pid):
            raise KernelThread(f"process {pid} is a kernel thread: it has no user memory", pid)
        raise procfs.gone_error(pid, procfs.proc_path(pid, "maps"), started=started)
    return vmas


# -- the columns of a maps read --------------------------------------------------------------------
# Lookup tables for the vectorised decoder: each byte's value as a hex digit, or as a decimal one;
# 255 for any other byte.
_HEX_LUT = np.array([int(c, 16) if c in "0123456789abcdef" else 255 for c in map(chr, range(256))], dtype=np.uint8)
_DEC_LUT = np.array([int(c) if c in "0123456789" else 255 for c in map(chr, range(256))], dtype=np.uint8)


class VmaTable:
    """The VMAs of one maps read as columns (start, end, offset, inode: u64 arrays, in bytes and as
    printed), with the string fields, the `Vma` objects and the lines as pmaps prints them made only
    when asked for. A process of 65,000 VMAs is a few numpy passes here, not 65,000 Python objects
    (building them alone costs 30-40 ms)."""

    def __init__(self, start: np.ndarray, end: np.ndarray, offset: np.ndarray, inode: np.ndarray,
                 vmas: list[Vma] | None = None, text: str = "", pos: np.ndarray | None = None,
                 buf: np.ndarray | None = None) -> None:
        self.start, self.end, self.offset, self.inode = start, end, offset, inode
        self._text = text  # the maps text (ASCII), when decoded from it
        self._buf = buf  # the same text's bytes (u8), read by the numpy paths
        # Per line, offsets in _text: line start, end, perms start, end, dev start, end, path start, inode end.
        self._pos = pos
        self.source = b""  # the maps read decoded into this table (decode_table), b"" for of_vmas
        self._whole = True  # every line of _text, in order (not a take())
        if vmas is not None:
            self.__dict__["vmas"] = vmas

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def of(cls, vmas: VmaTable | list[Vma]) -> VmaTable:
        """`vmas` as a table: itself when it is one, else of_vmas (the places that take either)."""
        return vmas if isinstance(vmas, VmaTable) else cls.of_vmas(list(vmas))

    @classmethod
    def of_vmas(cls, vmas: list[Vma]) -> VmaTable:
        """The columns of a list of VMAs (a snapshot's, a sample's)."""
        n = len(vmas)
        start, end, offset, inode = (np.fromiter((v[k] for v in vmas), dtype=np.uint64, count=n) for k in (0, 1, 3, 5))
        return cls(start, end, offset, inode, vmas=vmas)

    @classmethod
    def of_fields(cls, start: np.ndarray, end: np.ndarray, perms: list[str], offset: np.ndarray, dev: list[str],
                  inode: np.ndarray, path: list[str],
                  kinds: dict[str, tuple[list[str], np.ndarray]] | None = None) -> VmaTable:
        """VMAs given as their fields (a stored VMA list), the `Vma` objects made only when asked for;
        `kinds`: the kinds() of "perms" or "dev" when the reader has them."""
        t = cls(start, end, offset, inode)
        t.__dict__.update(perms=perms, dev=dev, path=path)
        for name, got in (kinds or {}).items():
            t.__dict__["_kinds_" + name] = got
        return t

    @property
    def start_page(self) -> np.ndarray:
        return self.start >> np.uint64(PAGE_SHIFT)

    @property
    def end_page(self) -> np.ndarray:
        return self.end >> np.uint64(PAGE_SHIFT)

    def _field(self, a: int, b: int) -> list[str]:
        assert self._pos is not None
        t = self._text
        return [t[x:y] for x, y in zip(self._pos[:, a].tolist(), self._pos[:, b].tolist())]

    def _short_codes(self, a: int, b: int) -> tuple[list[str], np.ndarray] | None:
        """A field of at most 8 characters (perms, dev) as (distinct values, index of each line's):
        each line's bytes read as one u64 by numpy (the eight bytes from the field's start, one
        gather of a u64 view of the text at every byte offset, the bytes after the field masked
        off), each distinct value decoded once (a few, for thousands of lines). None for a few
        lines, or a field this cannot read."""
        assert self._pos is not None
        p = self._pos
        if len(p) < 64:
            return None
        lens = p[:, b] - p[:, a]
        buf = self._buf if self._buf is not None else np.frombuffer(self._text.encode("ascii"), dtype=np.uint8)
        starts = p[:, a]
        if int(lens.max()) > 8 or int(starts.max()) > len(buf) - 8:  # too long, or too near the end
            return None
        words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # unaligned, overlapping
        mask = LEN_MASK[lens]
        g = words[starts] & mask
        low, high = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)
        y = g | ~mask  # a NUL inside the field (padding would hide it): the zero-byte test on y
        if ((y - low) & ~y & high).any():
            return None
        uniq, inv = distinct(g)
        return [int(u).to_bytes(8, "little").rstrip(b"\0").decode("ascii") for u in uniq.tolist()], inv

    def _short_field(self, name: str, a: int, b: int) -> list[str]:
        """The strings of a short field, from its kinds when numpy read them."""
        got = self.__dict__.get("_kinds_" + name) or self._short_codes(a, b)
        if got is None:
            return self._field(a, b)
        self.__dict__["_kinds_" + name] = got
        out: list[str] = np.array(got[0], dtype=object)[got[1]].tolist()
        return out

    def kinds(self, name: str) -> tuple[list[str], np.ndarray]:
        """The distinct values of "perms" or "dev" and the index of each VMA's among them (int64):
        for a writer that formats each value once and needs no list of strings."""
        key = "_kinds_" + name
        if key not in self.__dict__:
            a, b = (2, 3) if name == "perms" else (4, 5)
            got = self._short_codes(a, b) if self._pos is not None else None
            if got is None:
                values: list[str] = getattr(self, name)
                index = {v: i for i, v in enumerate(dict.fromkeys(values))}
                got = list(index), np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
            self.__dict__[key] = got
        out: tuple[list[str], np.ndarray] = self.__dict__[key]
        return out

    @cached_property
    def perms(self) -> list[str]:
        return self._short_field("perms", 2, 3) if self._pos is not None else [v.perms for v in self.vmas]

    @cached_property
    def dev(self) -> list[str]:
        return self._short_field("dev", 4, 5) if self._pos is not None else [v.dev for v in self.vmas]

    @cached_property
    def named(self) -> np.ndarray:
        """Which VMAs have a path (bool)."""
        if self._pos is None:
            return np.fromiter(map(bool, self.path), dtype=bool, count=len(self))
        return self._pos[:, 6] != self._pos[:, 1]

    @cached_property
    def path(self) -> list[str]:
        """Each VMA's path ('' when unnamed): only the named VMAs' text is cut out (a process of many
        anonymous VMAs has few)."""
        if self._pos is None:
            return [v.path for v in self.vmas]
        p = self._pos
        named = np.flatnonzero(p[:, 6] != p[:, 1])
        if 2 * len(named) > len(p):
            return self._field(6, 1)
        out = [""] * len(p)
        t = self._text
        for i, x, y in zip(named.tolist(), p[named, 6].tolist(), p[named, 1].tolist()):
            out[i] = t[x:y]
        return out

    @cached_property
    def vmas(self) -> list[Vma]:
        cols = zip(self.start.tolist(), self.end.tolist(), self.perms, self.offset.tolist(), self.dev,
                   self.inode.tolist(), self.path)
        return [Vma._make(c) for c in cols]

    def find(self, other: VmaTable) -> np.ndarray:
        """Index in this table of each VMA of `other` with the same start and end (the last such
        VMA, as a dict keyed by (start, end) would have it), -1 where none: int64, one per VMA of
        `other`. Vectorised when this table's starts are increasing, as one maps read lists them."""
        if other is self:
            return np.arange(len(self), dtype=np.int64)
        s, e = self.start, self.end
        if not len(s) or not len(other):
            return np.full(len(other), -1, dtype=np.int64)
        if bool((s[1:] > s[:-1]).all()):
            k = np.minimum(np.searchsorted(s, other.start), len(s) - 1)
            hit = (s[k] == other.start) & (e[k] == other.end)
            return np.where(hit, k, -1).astype(np.int64)
        where = {key: i for i, key in enumerate(zip(s.tolist(), e.tolist()))}
        keys = zip(other.start.tolist(), other.end.tolist())
        return np.fromiter((where.get(key, -1) for key in keys), dtype=np.int64, count=len(other))

    def take(self, idx: np.ndarray) -> VmaTable:
        """The VMAs at these indexes (an int array), as a table of their own."""
        if self._pos is None:
            pick = idx.tolist()
            if "vmas" not in self.__dict__ and "path" in self.__dict__:  # of_fields: no Vma objects
                perms, dev, path = self.perms, self.dev, self.path
                return VmaTable.of_fields(self.start[idx], self.end[idx], [perms[i] for i in pick], self.offset[idx],
                                          [dev[i] for i in pick], self.inode[idx], [path[i] for i in pick])
            vmas = self.vmas
            return VmaTable(self.start[idx], self.end[idx], self.offset[idx], self.inode[idx],
                            vmas=[vmas[i] for i in pick])
        t = VmaTable(self.start[idx], self.end[idx], self.offset[idx], self.inode[idx], text=self._text,
                     pos=self._pos[idx], buf=self._buf)
        t._whole = False
        return t

    def vma(self, i: int) -> Vma:
        """VMA i, without making the others."""
        if "vmas" in self.__dict__ or (self._pos is None and "path" not in self.__dict__):
            return self.vmas[i]
        if self._pos is None:  # of_fields
            return Vma(int(self.start[i]), int(self.end[i]), self.perms[i], int(self.offset[i]), self.dev[i],
                       int(self.inode[i]), self.path[i])
        _, b, pa, pb, da, db, path, _ = self._pos[i].tolist()
        t = self._text
        return Vma(int(self.start[i]), int(self.end[i]), t[pa:pb], int(self.offset[i]), t[da:db],
                   int(self.inode[i]), t[path:b])

    def headers(self) -> list[str]:
        """Each VMA's line as the kernel printed it (an unnamed VMA's without its trailing blanks):
        the 2007 view's VMA lines (to be escaped for a terminal). Rebuilt (Vma.maps_line) when the
        table was not decoded from maps text."""
        if self._pos is None:
            return [v.maps_line() for v in self.vmas]
        p = self._pos
        unnamed = p[:, 6] == p[:, 1]
        # An unnamed VMA's line ends at its inode: cut the blanks after it.
        ends = np.where(unnamed, p[:, 7], p[:, 1])
        t = self._text
        if not unnamed.any() and self._whole:
            lines = t[p[0, 0]: p[-1, 1]].split("\n") if len(p) else []
        else:
            lines = [t[x:y] for x, y in zip(p[:, 0].tolist(), ends.tolist())]
        return lines

    @cached_property
    def plain(self) -> bool:
        """No line holds a control character (C0 or DEL; decoded text is ASCII), so that no field
        or line needs escaping for a terminal (render.table.printable): one numpy pass over the
        bytes, instead of a regex over the lines (10 ms for 65,000); a take() answers for the whole
        text. False when unknown (a table not decoded from maps text)."""
        buf = self._buf
        if buf is None:
            return False
        return int(np.count_nonzero(buf < 32)) == int(np.count_nonzero(buf == 10)) and not bool((buf == 127).any())


def decode_table(data: bytes) -> VmaTable:
    """A maps read as a VmaTable: vectorised for the kernel's ASCII lines; any other input (a
    non-ASCII path, a line the fast path does not take) goes through decode_maps' own parser,
    which also reports a malformed line (MapsFormatError). The columns come from the compiled
    core when it is built (one pass in C: 3-4 ms for 65,000 lines, numpy's passes 25-40 ms)."""
    table = None
    if data and data.isascii():
        core = load_core()
        table = _fast_table(data) if core is None else _core_table(data, core)
    if table is None:
        table = VmaTable.of_vmas(_decode_maps(data))
    table.source = data
    return table


def _fast_table(data: bytes) -> VmaTable | None:
    """The columns from numpy passes over the bytes, or None when a line is not of the usual shape
    "HEX-HEX PERMS HEX DEV DEC[ +PATH]" (the slow path then decides)."""
    if not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    le = np.flatnonzero(buf == 10)
    n = len(le)
    ls = np.empty(n, dtype=np.int64)
    ls[0] = 0
    ls[1:] = le[:-1] + 1
    if (le <= ls).any():  # a blank line
        return None
    sp = np.flatnonzero(buf == 32)
    k = np.searchsorted(sp, ls)
    if len(sp) < 4 or (k + 3 >= len(sp)).any():
        return None
    s1, s2, s3, s4 = sp[k], sp[k + 1], sp[k + 2], sp[k + 3]
    if (s4 >= le).any() or ((s2 - s1) < 2).any() or ((s4 - s3) < 2).any():
        return None
    # The inode ends at the next blank or at the end of the line; the path starts after the blanks.
    k5 = np.minimum(k + 4, len(sp) - 1)
    s5 = np.where((k + 4 < len(sp)) & (sp[k5] < le), sp[k5], le)
    dashes = np.flatnonzero(buf == 45)
    kd = np.searchsorted(dashes, ls)
    if len(dashes) == 0 or (kd >= len(dashes)).any():
        return None
    dash = dashes[kd]
    if (dash >= s1).any():
        return None
    hexw = digit_windows(data, _HEX_LUT)
    start = read_digits(hexw, ls, dash, True)
    end = read_digits(hexw, dash + 1, s1, True)
    offset = read_digits(hexw, s2 + 1, s3, True)
    inode = read_digits(digit_windows(data), s4 + 1, s5, False)
    if start is None or end is None or offset is None or inode is None:
        return None
    # Blanks between the inode and the path (` *` in decode_maps' pattern): the run of blanks from s5.
    path = le.copy()
    has = s5 < le
    if has.any():
        brk = np.flatnonzero(np.diff(sp) != 1)  # sp[brk[j]] ends a run of consecutive blanks
        j = np.searchsorted(brk, (k + 4)[has])
        last = np.where(j < len(brk), sp[brk[np.minimum(j, len(brk) - 1)]], sp[-1])
        path[has] = np.minimum(last + 1, le[has])
    pos = np.stack([ls, le, s1 + 1, s2, s3 + 1, s4, path, s5], axis=1)
    return VmaTable(start, end, offset, inode, text=data.decode("ascii"), pos=pos, buf=buf)


def _core_table(data: bytes, core: Core) -> VmaTable | None:
    """_fast_table by the compiled core (_kpage.c maps_columns): the same columns, positions, text
    and bytes, or None where _fast_table returns None."""
    if not data.endswith(b"\n"):
        data += b"\n"
    got = core.maps_columns(data)
    if got is None:
        return None
    n = len(got[1]) // 64
    start, end, offset, inode = np.frombuffer(got[0], dtype=np.uint64).reshape(4, n)
    pos = np.frombuffer(got[1], dtype=np.int64).reshape(n, 8)
    return VmaTable(start, end, offset, inode, text=data.decode("ascii"), pos=pos,
                    buf=np.frombuffer(data, dtype=np.uint8))


LEN_MASK = np.array([(1 << 8 * k) - 1 for k in range(9)], dtype=np.uint64)  # the low k bytes of a u64
_PAD = 20  # bytes before the maps text, so that every field has a full window of digits before its end
_POW10 = np.uint64(10) ** np.arange(_PAD - 1, -1, -1, dtype=np.uint64)
_COLS = np.arange(_PAD, dtype=np.int64)


def digit_windows(data: bytes, lut: np.ndarray | None = None) -> np.ndarray:
    """Sliding windows of _PAD bytes over the text, or over its bytes' values in `lut` (one
    translate of the whole text: cheaper than a lookup per field when several fields read it):
    row i holds text[i - _PAD:i] (zeros before the text)."""
    text = data if lut is None else data.translate(lut.tobytes())
    vals = np.frombuffer(bytes(_PAD) + text, dtype=np.uint8)
    return np.lib.stride_tricks.sliding_window_view(vals, _PAD)


def read_digits(win: np.ndarray, a: np.ndarray, b: np.ndarray, hexa: bool) -> np.ndarray | None:
    """The numbers written in text[a:b] per row, hex (up to 16 digits; `win`: digit_windows of the text
    through _HEX_LUT) or decimal (up to 19; `win`: digit_windows of the raw text, only as many columns
    looked up in _DEC_LUT as the longest value has: an anonymous VMA's inode is "0"), as u64; None
    when a field is empty, too long, or holds another character."""
    lens = b - a
    if (lens < 1).any() or (lens > (16 if hexa else _PAD - 1)).any():
        return None
    w = 16 if hexa else int(lens.max())
    d = win[b, _PAD - w:]  # the w bytes before each b: one contiguous (n, w) copy
    if not hexa:
        d = _DEC_LUT.take(d)
    d[_COLS[:w] < (w - lens)[:, None]] = 0  # the bytes before the field
    if (d == 255).any():
        return None
    if hexa:
        packed = np.ascontiguousarray((d[:, 0::2] << 4) | d[:, 1::2])
        return packed.view(">u8").ravel().astype(np.uint64)
    v = d[:, 0].astype(np.uint64)
    for j in range(1, w):  # Horner's rule, a column at a time (a sum over short rows is slower)
        v = v * np.uint64(10) + d[:, j]
    return v
