"""/proc/PID/maps (Documentation/filesystems/proc.rst, "The /proc/PID/maps file"): the pure decoder
and the one reader every collector uses."""
from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import KernelThread
from ..numeric import PAGE_SHIFT, PAGE_SIZE
from . import procfs

__all__ = ["PAGE_SHIFT", "PAGE_SIZE", "MapsFormatError", "Vma", "decode_maps", "decode_maps_line", "read_maps"]


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


def read_maps_lines(pid: int, *, started: bool = False) -> tuple[list[Vma], list[str] | None]:
    """read_maps, and the lines as read (see maps_lines)."""
    data = procfs.read_file(pid, "maps", started=started)
    vmas = _checked(pid, decode_maps(data), started)
    return vmas, maps_lines(data, vmas)


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
