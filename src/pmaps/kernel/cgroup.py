"""/proc/PID/cgroup (Documentation/admin-guide/cgroup-v2.rst, "/proc/PID/cgroup"). Pure."""
from __future__ import annotations


def decode_cgroup(data: bytes) -> str:
    """The process's cgroup path: the unified (v2) hierarchy's "0::PATH" line, or on a v1/hybrid
    system the memory controller's line."""
    v2 = mem = ""
    for line in data.decode("utf-8", "replace").splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2 = path
        elif "memory" in ctrls.split(","):
            mem = path
    # On a hybrid system the v2 line is "/" while the memory controller lives in v1.
    return mem if mem and v2 in ("", "/") else (v2 or mem or "/")
