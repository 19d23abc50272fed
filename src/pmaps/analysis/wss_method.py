"""Which working-set method runs (wss): idle page tracking, DAMON or clear_refs. Without numpy: the
command decides before it imports the analysis, so that a clear_refs interval can start meanwhile."""
from __future__ import annotations

from ..errors import Unsupported
from ..kernel import caps as capsmod

# auto picks DAMON only for intervals this long: each DAMON cycle also writes one sysfs region per
# resident page and its samples stretch with the region count (measured: a 4200-page process took
# 0.7 s for a 0.3 s interval), so shorter cycles would mostly measure overhead. method="damon" forces it.
DAMON_AUTO_MIN_INTERVAL = 1.0


def damon_usable() -> str | None:
    """None when DAMON can be claimed now, else why not (kernel/damon.py: numpy's, imported only here)."""
    from ..kernel import damon as damonmod

    return damonmod.usable()


def choose_method(requested: str, interval: float, caps: capsmod.Caps) -> str:
    """The method to use ("auto": idle tracking, else DAMON for long intervals, else clear_refs);
    Unsupported when a requested method cannot run here."""
    method = requested
    if method == "auto":
        if caps.idle_tracking and caps.sys_admin:
            method = "idle"
        elif interval >= DAMON_AUTO_MIN_INTERVAL and caps.sys_admin and damon_usable() is None:
            method = "damon"
        else:
            method = "clear_refs"
    if method == "idle" and not (caps.idle_tracking and caps.sys_admin):
        raise Unsupported("idle page tracking is unavailable (no /sys/kernel/mm/page_idle/bitmap, or not root)")
    if method == "damon":
        why = None if caps.sys_admin else "DAMON needs root (CAP_SYS_ADMIN: PFNs and /sys/kernel/mm/damon)"
        why = why or damon_usable()
        if why is not None:
            raise Unsupported(why)
    return method
