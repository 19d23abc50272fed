"""Helpers for integration tests: run pmaps, parse its outputs, read the kernel's oracle."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmaps.kernel.cgroup import find_memory_hierarchy
from pmaps.kernel.smaps import decode_smaps

ROOT = Path(__file__).resolve().parent.parent
PAGE = 4096
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


class ForkChild:
    """tests/forkchild.py: a parent, N COW workers, maybe a CLONE_VM sibling."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).parent / "forkchild.py"), *args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.p.stdout.readline())  # type: ignore[union-attr]
        if "error" in self.info:
            self.close()
            pytest.skip(self.info["error"])

    def cmd(self, line: str) -> None:
        self.p.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.p.stdin.flush()  # type: ignore[union-attr]
        assert json.loads(self.p.stdout.readline())["ok"]  # type: ignore[union-attr]

    @property
    def pids(self) -> list[int]:
        return [self.info["parent"], *self.info["workers"], *([self.info["clone"]] if self.info["clone"] else [])]

    def close(self) -> None:
        try:
            self.p.stdin.write("exit\n")  # type: ignore[union-attr]
            self.p.stdin.close()  # type: ignore[union-attr]
        except (OSError, ValueError):
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p.stdout.close()  # type: ignore[union-attr]


@contextlib.contextmanager
def diverged_family(*extra: str) -> Iterator[ForkChild]:
    """A parent and 3 COW workers over 1 MiB: worker 0 rewrote pages 0-63, worker 1 pages 0-127."""
    fc = ForkChild("--workers", "3", "--cow", "1M", *extra)
    try:
        fc.cmd("diverge 0 0 64")
        fc.cmd("diverge 1 0 128")
        yield fc
    finally:
        fc.close()


def pmaps_cmd(*args: str, user: bool = False, env: dict[str, str] | None = None, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    """Run `python -m pmaps ARGS` in a subprocess (optionally as nobody)."""
    argv = [sys.executable, "-m", "pmaps", *args]
    if user:
        argv = NOBODY + argv
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src")
    e.update(env or {})
    r = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"pmaps {args} exited {r.returncode}: {r.stderr}")
    return r


def json_vmas(out: str) -> dict[int, dict]:
    """pmaps --format json output -> {vma start: vma object} of the single process."""
    doc = json.loads(out)
    assert doc["schema"] == "pmaps/1"
    (proc,) = doc["processes"]
    return {v["start"]: v for v in proc["vmas"]}


def page_set(ranges: list[dict], base_index: int = 0) -> set[int]:
    """Page indexes (relative to base_index) covered by ranges."""
    out: set[int] = set()
    for r in ranges:
        out.update(range(r["index"] - base_index, r["index"] - base_index + r["count"]))
    return out


def runs_to_set(runs: list[list[int]]) -> set[int]:
    out: set[int] = set()
    for first, count in runs:
        out.update(range(first, first + count))
    return out


def smaps_by_start(pid: int) -> dict[int, dict[str, int]]:
    return {r["start"]: r for r in decode_smaps(Path(f"/proc/{pid}/smaps").read_bytes())}


def text_blocks(out: str) -> list[tuple[str, list[tuple[int, int, str, str]]]]:
    """The 2007 text format -> [(maps line, [(index, count, flags, mapcount), ...]), ...]."""
    blocks: list[tuple[str, list[tuple[int, int, str, str]]]] = []
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        parts = line.split()
        if "-" in parts[0]:
            blocks.append((line, []))
        else:
            blocks[-1][1].append((int(parts[0]), int(parts[1]), parts[2], parts[3]))
    return blocks


# -- memory cgroups of the tests' own (created, used, removed; never one the tests did not create) -----

MEMCG = find_memory_hierarchy()
needs_memcg = pytest.mark.skipif(os.geteuid() != 0 or MEMCG is None or not os.path.exists("/proc/kpagecgroup"),
                                 reason="needs root, a memory cgroup controller and /proc/kpagecgroup")


def _rmdir(path: Path) -> None:
    for _ in range(100):  # EBUSY until the killed tasks are gone
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    path.rmdir()


@contextlib.contextmanager
def memcgs() -> Iterator[tuple[Path, str]]:
    """A parent memcg of our own with children A and B; removed afterwards, whatever happens."""
    assert MEMCG is not None
    name = f"pmaps-test-{os.getpid()}"
    parent = Path(MEMCG.root) / name
    parent.mkdir()
    made = [parent]
    try:
        for sub in ("A", "B"):
            (parent / sub).mkdir()
            made.append(parent / sub)
        yield parent, "/" + name
    finally:
        for d in reversed(made):
            _rmdir(d)


def start_in(cg: Path, code: str, *args: str) -> subprocess.Popen[str]:
    """Join the cgroup first, then exec python: every page is charged there (charges do not move
    with a task on v1)."""
    p = subprocess.Popen(["sh", "-c", f'echo $$ > "{cg}/cgroup.procs" && exec "$0" -c "$1" "$2"', sys.executable,
                          code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def close(p: subprocess.Popen[str]) -> None:
    p.kill()
    p.wait()


def uncached_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes, written, synced and dropped from the page cache: the first
    process that reads it is charged for its pages."""
    path.write_bytes(os.urandom(size))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def within(ours: int, theirs: int) -> bool:
    """The issue's tolerance: 1% plus 64 pages."""
    return abs(ours - theirs) <= theirs // 100 + 64 * PAGE


@contextlib.contextmanager
def mapping_file_named(name: bytes, size: int = 8192) -> Iterator[int]:
    """A child that maps (read, every page touched) a new file at `name`, bytes that need not be
    UTF-8; yields its pid, kills it afterwards."""
    with open(name, "wb") as f:
        f.write(b"a" * size)
    code = ("import mmap,os,sys; fd=os.open(os.fsencode(sys.argv[1]), os.O_RDONLY); n=int(sys.argv[2]); "
            "m=mmap.mmap(fd, n, prot=mmap.PROT_READ); [m[i] for i in range(0, n, 4096)]; "
            "print('ready', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, os.fsdecode(name), str(size)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        yield p.pid
    finally:
        p.kill()
        p.wait()
