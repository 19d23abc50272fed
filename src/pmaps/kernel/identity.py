"""Who a sample belongs to, across hosts and reboots: host, boot_id, kernel release, a process's
start time and executable, and an ELF file's GNU build-id. Decoders are pure; readers fetch bytes.

- boot_id: /proc/sys/kernel/random/boot_id, a random UUID per boot (Documentation/admin-guide/
  sysctl/kernel.rst "random"): (host, boot_id, pid, start_ticks) names one process for ever.
- start_ticks: field 22 of /proc/PID/stat, clock ticks since boot (proc(5) "starttime");
  btime from /proc/stat turns it into wall time.
- build-id: the NT_GNU_BUILD_ID note of the ELF file (a PT_NOTE segment, named "GNU"); the same
  bytes on every host that runs this build, whatever ASLR does.
"""
from __future__ import annotations

import os
import struct

from ..errors import PmapsError
from . import procfs

NT_GNU_BUILD_ID = 3
PT_NOTE = 4
NOTE_MAX = 1 << 16  # a note segment larger than this is not a build-id note worth reading


def decode_start_ticks(stat: bytes) -> int:
    """starttime (field 22) of /proc/PID/stat; comm (field 2) may hold spaces and parens."""
    rest = stat[stat.rindex(b")") + 2:].split()
    return int(rest[19])  # fields 3.. -> index 0 is field 3, so field 22 is index 19


def decode_btime(stat: bytes) -> int:
    """Boot time (Unix seconds) from /proc/stat's btime line."""
    for line in stat.splitlines():
        if line.startswith(b"btime "):
            return int(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


def read_boot_id() -> str:
    return procfs.read_system("/proc/sys/kernel/random/boot_id").decode().strip()


def read_btime() -> int:
    return decode_btime(procfs.read_system("/proc/stat"))


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def host_facts() -> tuple[str, str]:
    """(host name, kernel release) from uname(2)."""
    u = os.uname()
    return u.nodename, u.release


def read_start_ticks(pid: int) -> int:
    return decode_start_ticks(procfs.read_file(pid, "stat"))


def read_exe(pid: int) -> str | None:
    """The executable's path (/proc/PID/exe), None when hidden (not ours, kernel thread) or gone."""
    try:
        return os.readlink(procfs.proc_path(pid, "exe"))
    except OSError:
        return None


def decode_build_id(head: bytes, read_at: object = None) -> str | None:
    """The GNU build-id (hex) of an ELF image whose first bytes are `head`; `read_at(offset, size)`
    fetches note segments beyond `head`. None when not an ELF or no build-id note."""
    if len(head) < 64 or head[:4] != b"\x7fELF":
        return None
    cls, data = head[4], head[5]
    if data not in (1, 2) or cls not in (1, 2):
        return None
    end = "<" if data == 1 else ">"

    def fetch(off: int, size: int) -> bytes:
        if off + size <= len(head):
            return head[off:off + size]
        return read_at(off, size) if callable(read_at) else b""

    if cls == 2:
        phoff, = struct.unpack_from(end + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        ph_fmt, note_at = end + "IIQQQQQQ", (2, 5)  # type, flags, offset, vaddr, paddr, filesz
    else:
        phoff, = struct.unpack_from(end + "I", head, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        ph_fmt, note_at = end + "IIIIIIII", (1, 4)  # type, offset, vaddr, paddr, filesz
    if phnum > 4096 or phentsize < struct.calcsize(ph_fmt):
        return None
    table = fetch(phoff, phentsize * phnum)
    for i in range(min(phnum, len(table) // phentsize)):
        ph = struct.unpack_from(ph_fmt, table, i * phentsize)
        if ph[0] != PT_NOTE:
            continue
        off, size = ph[note_at[0]], ph[note_at[1]]
        notes = fetch(off, min(size, NOTE_MAX))
        pos = 0
        while pos + 12 <= len(notes):
            namesz, descsz, ntype = struct.unpack_from(end + "III", notes, pos)
            name_end = pos + 12 + namesz
            desc = (name_end + 3) & ~3
            if ntype == NT_GNU_BUILD_ID and notes[pos + 12:name_end].rstrip(b"\0") == b"GNU":
                bid = notes[desc:desc + descsz]
                return bid.hex() if len(bid) == descsz and descsz else None
            pos = desc + ((descsz + 3) & ~3)
    return None


def read_build_id(path: str) -> str | None:
    """Build-id of the file at `path` (a mapped file's path, from maps); None when unreadable,
    not ELF, or without one. Reads the ELF header and the note segments only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat as st

        if not st.S_ISREG(os.fstat(fd).st_mode):
            return None  # a device or FIFO behind a mapping: never block reading it
        head = os.pread(fd, 4096, 0)
        return decode_build_id(head, lambda off, size: os.pread(fd, size, off))
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


def read_proc(pid: int) -> tuple[int, str | None]:
    """(start_ticks, exe) of a process; NoSuchProcess/AccessDenied as procfs translates them."""
    try:
        return read_start_ticks(pid), read_exe(pid)
    except (ValueError, IndexError) as e:
        raise PmapsError(f"cannot read /proc/{pid}/stat: {e}") from e


def read_build_id_of(pid: int, path: str) -> str | None:
    """Build-id of a file a process maps: through /proc/PID/root first (the path is in the
    target's mount namespace), then the path as we see it."""
    if not path.startswith("/") or path.endswith(" (deleted)"):
        return None
    return read_build_id(procfs.proc_path(pid, "root") + path) or read_build_id(path)
