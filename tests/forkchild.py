#!/usr/bin/env python3
"""A parent, N forked workers sharing its pages copy-on-write, and optionally a CLONE_VM sibling.

    python tests/forkchild.py --workers N --cow 1M [--shared 256K] [--hugetlb 2] [--clone-vm]

The parent maps and writes `cow` (private anon) and `shared` (MAP_SHARED anon), maps `hugetlb`
2 MiB hugetlb pages (MAP_HUGETLB, private, written), then forks the workers (which share every
page copy-on-write until they write), then with --clone-vm starts a sibling with
clone(CLONE_VM): a separate pid in the same mm (it runs libc's pause(), no Python). It prints one
JSON line {"parent", "workers", "clone", "regions": {name: [start, end]}} and serves stdin:

    diverge I A B   worker I writes pages A..B-1 of cow (its own copies: COW breaks)
    exit            (or EOF) kill the workers and the sibling, exit

Answers are one JSON line each. Stdlib only.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from memchild import (MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE, PR_SET_PDEATHSIG, PROT_READ, PROT_WRITE, _libc,
                      mmap, parse_size)

MAP_HUGETLB = 0x40000
CLONE_VM = 0x100
HUGE = 2 << 20


def guarded(size: int, flags: int) -> int:
    """mmap with a PROT_NONE page on each side, so the region stays one VMA of its own."""
    base = mmap(0, size + 2 * PAGE, PROT_READ | PROT_WRITE, flags)
    _libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for a in (base, base + PAGE + size):
        if _libc.mprotect(a, PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
    return base + PAGE


def write(addr: int, lo: int, hi: int, byte: int) -> None:
    """Write one byte per page: enough to fault the page in (and to break COW)."""
    for i in range(lo, hi):
        ctypes.c_char.from_address(addr + i * PAGE).value = bytes([byte])


def worker(rfd: int, wfd: int, cow: int, byte: int) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    with os.fdopen(rfd) as cmds:
        for line in cmds:
            a, b = map(int, line.split())
            write(cow, a, b, byte)
            os.write(wfd, b"k")
    os._exit(0)


def clone_vm_sibling() -> tuple[int, int]:
    """clone(pause, stack, CLONE_VM | SIGCHLD): a new pid sharing this mm. Returns (pid, stack)."""
    size = 64 << 10
    stack = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    _libc.clone.restype = ctypes.c_int
    _libc.clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    fn = ctypes.cast(_libc.pause, ctypes.c_void_p)
    pid = _libc.clone(fn, stack + size - 64, CLONE_VM | signal.SIGCHLD, None)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone(CLONE_VM)")
    return pid, stack


def main(argv: list[str]) -> int:
    opts = {"--workers": "2", "--cow": "1M", "--shared": "0", "--hugetlb": "0"}
    clone = "--clone-vm" in argv
    args = [a for a in argv if a != "--clone-vm"]
    for k, v in zip(args[::2], args[1::2]):
        opts[k] = v
    n = int(opts["--workers"])
    regions: dict[str, list[int]] = {}
    cow_size = parse_size(opts["--cow"])
    cow = guarded(cow_size, MAP_PRIVATE | MAP_ANONYMOUS)
    write(cow, 0, cow_size // PAGE, 0x11)
    regions["cow"] = [cow, cow + cow_size]
    sh_size = parse_size(opts["--shared"])
    if sh_size:
        sh = guarded(sh_size, MAP_SHARED | MAP_ANONYMOUS)
        write(sh, 0, sh_size // PAGE, 0x22)
        regions["shared"] = [sh, sh + sh_size]
    nh = int(opts["--hugetlb"])
    if nh:
        try:
            ht = mmap(0, nh * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)
            for i in range(nh):
                ctypes.c_char.from_address(ht + i * HUGE).value = b"\x33"
            regions["hugetlb"] = [ht, ht + nh * HUGE]
        except OSError as e:
            print(json.dumps({"error": f"hugetlb: {e}"}), flush=True)
            return 1
    sys.stdout.flush()
    workers, pipes = [], []
    done_r, done_w = os.pipe()
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            worker(r, done_w, cow, 0x40 + i)
        os.close(r)
        workers.append(pid)
        pipes.append(w)
    sibling = None
    if clone:
        sibling, _ = clone_vm_sibling()
    print(json.dumps({"parent": os.getpid(), "workers": workers, "clone": sibling, "regions": regions}), flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "exit":
                break
            if words[0] == "diverge":
                i, a, b = map(int, words[1:])
                os.write(pipes[i], f"{a} {b}\n".encode())
                os.read(done_r, 1)
            print(json.dumps({"ok": True}), flush=True)
    finally:
        for pid in workers + ([sibling] if sibling else []):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
