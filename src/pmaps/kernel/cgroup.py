"""/proc/PID/cgroup (Documentation/admin-guide/cgroup-v2.rst, "/proc/PID/cgroup"), the memory
controller's hierarchy (v1 `memory` or v2 unified) and its memory.stat. Decoders are pure."""
from __future__ import annotations

import os
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"


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


def decode_memory_stat(data: bytes) -> dict[str, int]:
    """memory.stat: "key value" lines (bytes, or event counts for pg*) -> dict."""
    out: dict[str, int] = {}
    for line in data.decode("ascii", "replace").splitlines():
        k, _, v = line.partition(" ")
        if k and v.strip().isdigit():
            out[k] = int(v)
    return out


@dataclass(frozen=True)
class MemHierarchy:
    """Where the memory controller is mounted and which version it is."""

    root: str  # the directory of the root cgroup
    version: int  # 1 or 2


def find_memory_hierarchy(base: str = CGROUP_ROOT) -> MemHierarchy | None:
    """v1 when base/memory holds memory.stat (Documentation/admin-guide/cgroup-v1/memory.rst),
    v2 when base's cgroup.controllers lists memory (cgroup-v2.rst); None without a memory controller."""
    v1 = os.path.join(base, "memory")
    if os.path.exists(os.path.join(v1, "memory.usage_in_bytes")):
        return MemHierarchy(v1, 1)
    try:
        with open(os.path.join(base, "cgroup.controllers")) as f:
            if "memory" in f.read().split():
                return MemHierarchy(base, 2)
    except OSError:
        pass
    return None


def memcg_exists(path: str, base: str = CGROUP_ROOT) -> bool | None:
    """Whether `path` (as /proc/PID/cgroup prints it, decode_cgroup's) is a cgroup of the memory
    controller's hierarchy; None when there is no memory controller to tell."""
    h = find_memory_hierarchy(base)
    if h is None:
        return None
    return os.path.isdir(os.path.join(h.root, path.strip("/")))


def memcg_dirs(h: MemHierarchy) -> dict[int, str]:
    """inode -> cgroup path (as /proc/PID/cgroup prints it: "/" for the root) of every memory
    cgroup: kpagecgroup's values are these inodes (fs/proc/page.c, page_cgroup_ino)."""
    out: dict[int, str] = {}
    for d, _, _ in os.walk(h.root):
        try:
            ino = os.stat(d).st_ino
        except OSError:
            continue  # removed during the walk
        rel = os.path.relpath(d, h.root)
        out[ino] = "/" if rel == "." else "/" + rel
    return out


def read_memory_stat(h: MemHierarchy, path: str) -> dict[str, int] | None:
    """memory.stat of the cgroup at `path` (as in /proc/PID/cgroup); None when gone/unreadable."""
    try:
        with open(os.path.join(h.root, path.lstrip("/"), "memory.stat"), "rb") as f:
            return decode_memory_stat(f.read())
    except OSError:
        return None


def read_usage(h: MemHierarchy, path: str) -> int | None:
    """The cgroup's memory usage in bytes: v1 memory.usage_in_bytes (hierarchical, and approximate:
    per-CPU charge caches), v2 memory.current; None when gone or unreadable."""
    name = "memory.usage_in_bytes" if h.version == 1 else "memory.current"
    try:
        with open(os.path.join(h.root, path.lstrip("/"), name), "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


LRU_GEN = "/sys/kernel/mm/lru_gen/enabled"


def decode_lru_gen(data: bytes) -> bool:
    """Whether the multi-gen LRU is on: lru_gen/enabled prints a hex mask, bit 0 the feature
    itself (Documentation/admin-guide/mm/multigen_lru.rst). Pure."""
    try:
        return bool(int(data.strip() or b"0", 16) & 1)
    except ValueError:
        return False


def lru_gen_enabled(path: str = LRU_GEN) -> bool:
    """The multi-gen LRU is on (absent file: the kernel has none, or CONFIG_LRU_GEN is off). With it,
    a folio on the LRU has its generation in its flags and PG_active cleared (mm/vmscan.c
    lru_gen_add_folio), while memory.stat's active_* count the two youngest generations
    (include/linux/mm_inline.h lru_gen_is_active): kpageflags' ACTIVE cannot tell them."""
    try:
        with open(path, "rb") as f:
            return decode_lru_gen(f.read())
    except OSError:
        return False
