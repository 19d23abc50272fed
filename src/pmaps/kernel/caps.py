"""What this kernel and these privileges allow, probed at run time into a value."""
from __future__ import annotations

import os
from dataclasses import dataclass

CAP_SYS_ADMIN = 21
# Idle page tracking's bitmap (idle.py reads it). Here, not there: this module imports no numpy,
# and the commands probe before they import it.
IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"


def _cap_eff() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _soft_dirty_supported() -> bool:
    """CONFIG_MEM_SOFT_DIRTY: a new VMA carries "sd" in smaps VmFlags (proc.rst)."""
    try:
        with open("/proc/self/smaps", "rb") as f:
            for line in f:
                if line.startswith(b"VmFlags:"):
                    return b" sd" in line
    except OSError:
        pass
    return False


@dataclass(frozen=True)
class Caps:
    """Facts that decide what pmaps can know; passed down, never global."""

    sys_admin: bool  # PFNs are shown in pagemap only with CAP_SYS_ADMIN (since 4.2)
    idle_tracking: bool  # CONFIG_IDLE_PAGE_TRACKING and readable
    soft_dirty: bool  # CONFIG_MEM_SOFT_DIRTY


def _readable(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    os.close(fd)
    return True


def probe() -> Caps:
    """Probe this process's privileges and the kernel's features."""
    sys_admin = bool(_cap_eff() >> CAP_SYS_ADMIN & 1)
    return Caps(
        sys_admin=sys_admin,
        idle_tracking=_readable(IDLE_BITMAP),
        soft_dirty=_soft_dirty_supported(),
    )


def average_mapcounts() -> bool | None:
    """CONFIG_NO_PAGE_MAPCOUNT (6.15+): kpagecount of a large folio's page is then the folio's
    average map count, and PSS of partly shared large folios approximate; None when unknown."""
    return _config_flag(b"CONFIG_NO_PAGE_MAPCOUNT")


def _config_flag(name: bytes) -> bool | None:
    """y/n of a kernel config option from /proc/config.gz (CONFIG_IKCONFIG_PROC); None unknown."""
    import gzip

    try:
        with gzip.open("/proc/config.gz", "rb") as f:
            text = f.read()
    except OSError:
        return None
    return name + b"=y" in text
