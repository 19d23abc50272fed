"""pmaps watch PID: a live view of a process's VMAs and page states, refreshed every --interval."""
from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from ..collector.options import FIELDS, Options
from ..errors import NoSuchProcess, ZombieProcess
from ..kernel import procfs
from ..kernel.libc import malloc_arena_max
from . import Command, add_cpu_option, add_output_options, budget_interval, positive, seconds
from ._common import parse_pid

# numpy and the layers that use it are imported once the process's maps is being read ahead
# (procfs.read_ahead): the read and the imports overlap.
if TYPE_CHECKING:
    from ..collector import Process
    from ..model import Sample

SLOWDOWN = 1.5  # when a sample outlasts the interval, the next interval is this times the sample


class Watch(Command):
    """Watch a process live: per VMA resident/swapped/dirty/THP and their change since the last sample.

    Changed ranges are highlighted by kind (became present, freed, swapped out/in, dirtied, lost or
    gained sharing). The header shows pmaps' own cost (ms per sample, % of a core); when a sample
    takes longer than --interval the interval grows, and the view says so. Keys: q quit, s sort
    (address, resident, change), p pause. With --once, or when not on a terminal, prints plain text.
    """

    name = "watch"
    order = 32

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pid", metavar="PID")
        p.add_argument("--interval", type=seconds, default=1.0, metavar="S", help="seconds between samples (default 1)")
        add_cpu_option(p)
        p.add_argument("--fields", choices=FIELDS, default="full",
                       help="full: pagemap+kpageflags+kpagecount; flags: no kpagecount; pagemap: pagemap only "
                            "(much cheaper; no dirty/THP)")
        p.add_argument("--once", action="store_true", help="one sample, as plain text")
        p.add_argument("--count", type=positive, metavar="N", help="stop after N samples")
        p.add_argument("--sort", choices=("address", "resident", "change"), default="address")
        p.add_argument("--all", action="store_true", help="list VMAs with no pages too")
        add_output_options(p, formats=("text",))

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        pid = parse_pid(args.pid)
        tty = not args.once and _isatty(out) and _isatty(sys.stdin)
        malloc_arena_max(1)  # the reader threads' arenas kept what they freed (see record)
        procfs.read_ahead(pid, "maps")
        from ..collector import Process

        with Process(pid, Options.fields(args.fields)) as proc:
            loop = WatchLoop(proc, args)
            if tty:
                return loop.live(out)
            return loop.plain(out, err)


def _isatty(f: Any) -> bool:
    try:
        return bool(f.isatty())
    except (AttributeError, ValueError):
        return False


class WatchLoop:
    """Sampling with its own cost accounting and interval adaptation; two front ends."""

    def __init__(self, proc: Process, args: argparse.Namespace) -> None:
        self.proc, self.args = proc, args
        self.interval = args.interval
        self.prev: Sample | None = None
        self.seq = 0
        self.sort = args.sort
        self.status: list[str] = []
        self.cpu_mark = time.process_time()
        self.wall_mark = time.monotonic()
        self.ended = ""

    def step(self) -> Any | None:
        """Take a sample and build the view; None when the process is gone."""
        from ..analysis.diff import diff_samples
        from ..collector import take_sample
        from ..render.live import WatchView

        try:
            cur = take_sample(self.proc, seq=self.seq)
        except (NoSuchProcess, ZombieProcess) as e:
            self.ended = str(e)
            return None
        diff = diff_samples(self.prev, cur) if self.prev is not None else None
        self.status = [s for s in self.status if s.startswith("paused")]
        if cur.cost > self.interval:
            self.interval = round(cur.cost * SLOWDOWN, 2)
            self.status.append(f"a sample took {cur.cost * 1000:.0f} ms, longer than the interval: "
                               f"slowed down to every {self.interval:g}s")
        elif self.interval > self.args.interval and cur.cost * SLOWDOWN * 2 < self.interval:
            self.interval = max(self.args.interval, round(cur.cost * SLOWDOWN, 2))
        need = budget_interval(self.args.interval, cur.cost, self.args.max_cpu)
        if need > self.interval:
            self.interval = round(need, 2)
            self.status.append(f"CPU budget {self.args.max_cpu:g}% of a core: every {self.interval:g}s")
        now_cpu, now_wall = time.process_time(), time.monotonic()
        pct = 100.0 * (now_cpu - self.cpu_mark) / max(now_wall - self.wall_mark, 1e-6)
        self.cpu_mark, self.wall_mark = now_cpu, now_wall
        view = WatchView.build(cur, self.prev, diff, cost_ms=cur.cost * 1000, cpu_pct=pct, interval=self.interval,
                               fields=self.args.fields, sort=self.sort, status=self.status, all_vmas=self.args.all)
        self.prev = cur
        self.seq += 1
        return view

    def done(self) -> bool:
        return self.args.once or (self.args.count is not None and self.seq >= self.args.count)

    def plain(self, out: TextIO, err: TextIO) -> int:
        from ..render.live import write_plain

        first = True
        try:
            while True:
                t0 = time.monotonic()
                view = self.step()
                if view is None:
                    err.write(f"pmaps: watch ended: {self.ended}\n")
                    return 0
                if not first:
                    out.write("\n")
                first = False
                write_plain(out, view, self.args.unit)
                out.flush()
                if self.done():
                    return 0
                time.sleep(max(0.0, t0 + self.interval - time.monotonic()))
        except KeyboardInterrupt:
            return 0

    def live(self, out: TextIO) -> int:
        try:
            return self._live(out)
        except KeyboardInterrupt:  # Ctrl-C ends a watch as q does (the terminal is restored on the way)
            return 0

    def _live(self, out: TextIO) -> int:
        from rich.console import Console
        from rich.live import Live

        from ..render.live import SORTS, rich_view

        console = Console(file=out)
        paused = False
        view = self.step()
        if view is None:
            console.print(f"pmaps: {self.ended}")
            return 0
        with _cbreak(sys.stdin), Live(rich_view(view, self.args.unit, console.height), console=console,
                                      auto_refresh=False, redirect_stdout=False) as live:
            next_t = time.monotonic() + self.interval
            while not self.done():
                key = _key(sys.stdin, max(0.0, next_t - time.monotonic()))
                if key == "q":
                    break
                if key in ("s", "p"):
                    if key == "s":
                        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
                        view.sort = self.sort
                        view.sort_rows()
                    else:
                        paused = not paused
                        view.status = [s for s in view.status if not s.startswith("paused")]
                        self.status = [s for s in self.status if not s.startswith("paused")]
                        if paused:
                            self.status.append("paused: press p to resume")
                            view.status.append("paused: press p to resume")
                    live.update(rich_view(view, self.args.unit, console.height), refresh=True)
                    continue
                if time.monotonic() < next_t or paused:
                    if paused:
                        next_t = time.monotonic() + self.interval
                    continue
                new = self.step()
                next_t = time.monotonic() + self.interval
                if new is None:
                    view.status.append(f"process ended: {self.ended} (q to quit)")
                    live.update(rich_view(view, self.args.unit, console.height), refresh=True)
                    while _key(sys.stdin, 3600) != "q":
                        pass
                    break
                view = new
                live.update(rich_view(view, self.args.unit, console.height), refresh=True)
        return 0


@contextlib.contextmanager
def _cbreak(stream: TextIO) -> Iterator[None]:
    """Keys without Enter, no echo; the terminal mode is restored on any exit."""
    import termios
    import tty

    fd = stream.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _key(stream: TextIO, timeout: float) -> str | None:
    fd = stream.fileno()
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return None
    b = os.read(fd, 1)
    return b.decode(errors="replace").lower() if b else "q"
