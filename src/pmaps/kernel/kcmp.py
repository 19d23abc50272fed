"""kcmp(2) KCMP_VM: whether two processes share one mm (CLONE_VM without CLONE_THREAD, vfork).

smaps_rollup shows each such pid the whole mm; totals must count it once. Needs
PTRACE_MODE_READ on both processes (Documentation/userspace-api/... kcmp(2); Linux 3.5+,
CONFIG_KCMP, on by default where CONFIG_CHECKPOINT_RESTORE is)."""
from __future__ import annotations

import ctypes
import os

KCMP_VM = 1
# The syscall number differs per architecture (arch/*/entry/syscalls); None where not known here.
NR_KCMP = {"x86_64": 312, "aarch64": 272, "riscv64": 272, "ppc64le": 354, "s390x": 343}.get(os.uname().machine)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def same_mm(pid1: int, pid2: int) -> bool | None:
    """True when both pids use one mm, False when not, None when the kernel cannot say
    (no kcmp, a pid gone, or no permission)."""
    if NR_KCMP is None:
        return None
    r = _libc.syscall(ctypes.c_long(NR_KCMP), ctypes.c_int(pid1), ctypes.c_int(pid2), ctypes.c_int(KCMP_VM),
                      ctypes.c_ulong(0), ctypes.c_ulong(0))
    if r < 0:
        return None
    return r == 0
