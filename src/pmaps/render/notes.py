"""The prose pmaps adds on stderr about what a view cannot tell or did not count (one line each)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the 2007 view's notes need none of the scans' modules
    from ..model import Known, SystemScan
    from ..model.mapped import MappedScan


def missing_notes(known: Known, pfn: bool = False) -> list[str]:
    """What a view of these pages cannot tell, in phrases for one stderr line."""
    out = []
    if pfn and not known.pfn:
        out.append("PFNs (pagemap shows them only to CAP_SYS_ADMIN, since Linux 4.2)")
    if not (known.flags and known.count):
        out.append("page flags, map counts and swap entries (need CAP_SYS_ADMIN and /proc/kpageflags, kpagecount: "
                   "run as root)")
    if not known.young:
        out.append("Y (no idle page tracking in this kernel)")
    if not known.soft_dirty:
        out.append("P (no soft-dirty in this kernel)")
    if not known.zero:
        out.append("the zero page, which RSS then counts as resident (needs PAGEMAP_SCAN or root)")
    return out


def _pids(pids: list[int]) -> str:
    return ",".join(map(str, pids[:5])) + (",..." if len(pids) > 5 else "")


def skipped_line(scan: SystemScan | MappedScan) -> str | None:
    """The one line about processes that are not in a scan's figures, or None."""
    parts = []
    sk = scan.skipped
    if sk.get("exited"):
        parts.append(f"{len(sk['exited'])} exited during the scan")
    if sk.get("denied"):
        parts.append(f"{len(sk['denied'])} unreadable (permission denied: pid {_pids(sk['denied'])})")
    if sk.get("missing"):
        parts.append(f"{len(sk['missing'])} not found (no such process: pid {_pids(sk['missing'])})")
    if sk.get("kernel"):  # only when asked for by PID
        parts.append(f"{len(sk['kernel'])} kernel thread{'s' if len(sk['kernel']) > 1 else ''} "
                     f"(no user memory: pid {_pids(sk['kernel'])})")
    if not parts:
        return None
    n = sum(len(v) for v in sk.values())
    return f"{n} process{'es' if n > 1 else ''} not counted: " + "; ".join(parts)
