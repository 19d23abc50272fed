"""pmaps diff A [B]: the pages that changed state between two samples, per VMA."""
from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import TYPE_CHECKING, TextIO

from ..collector.options import FIELDS, Options
from ..errors import UsageError
from ..kernel import procfs
from ..safetext import printable
from . import Command, add_output_options, seconds_or_zero
from ._common import add_selector_options, is_pid_text, parse_pid, selector_given

# numpy and the layers that use it are imported once a live process's maps is being read ahead
# (procfs.read_ahead): the read and the imports overlap.
if TYPE_CHECKING:
    from ..model import Sample


class DiffCommand(Command):
    """Show the page ranges that changed state between A and B, per VMA, categorized.

    A and B are each a sample file, a recording directory (A: its first sample, B: its last;
    DIR@N: sample N), or a live PID (sampled now). 'pmaps diff DIR' compares a recording's first and
    last samples; 'pmaps diff PID' (or the same PID twice) samples it, waits --wait seconds, samples
    again. 'pmaps diff ROOT' compares two samples of one process of a fleet dataset (record
    --dataset): --host, --pid and --start-ticks choose the process when the dataset holds several,
    --at twice the samples (default: its last two). Changes: became present, freed, swapped out,
    swapped in, dirtied/written, lost sharing, gained sharing, other flag change. LRU bookkeeping
    bits (referenced, active, lru, idle, reclaim, locked) are ignored unless --all-flags.
    """

    name = "diff"
    order = 31

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("a", metavar="A")
        p.add_argument("b", metavar="B", nargs="?")
        p.add_argument("--wait", type=seconds_or_zero, default=1.0, metavar="S",
                       help="seconds between the two samples of one live PID (default 1)")
        p.add_argument("--fields", choices=FIELDS, default="full", help="what live samples read")
        p.add_argument("--all-flags", action="store_true", help="also report changes of LRU bookkeeping bits")
        add_selector_options(p, at=True)
        add_output_options(p)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        live = [src for src in (args.a, args.b) if src is not None and is_pid_text(src)]
        if live:
            with contextlib.suppress(UsageError):  # reported in its turn
                procfs.read_ahead(parse_pid(live[0]), "maps")
        from ..store.dataset import is_dataset

        if not is_pid_text(args.a) and is_dataset(args.a):
            return self._dataset(args, out, err)
        if (opt := selector_given(args)) is not None:
            raise UsageError(f"{opt} chooses samples of a dataset ROOT (record --dataset): {args.a[:60]!r} is not one")
        b_src = args.b if args.b is not None else args.a
        if is_pid_text(args.a) != is_pid_text(b_src):  # one live PID and one file
            a, b = self._file_beside_live(args, b_src)
        else:
            loaded = resolve_sample(args.a, last=False)
            if loaded is None:
                pid = _pid(args.a)
                if b_src == args.a:  # one live process twice: sample, wait, sample again, one open pagemap
                    from ..collector import Process, take_sample

                    with Process(pid, Options.fields(args.fields)) as proc:
                        a = take_sample(proc, seq=0)
                        time.sleep(max(args.wait, 0.0))
                        b = take_sample(proc, seq=1)
                    return self._write(out, err, args, a, b, "live", f"live, {args.wait:g}s later")
                loaded = self._live(pid, args)
            a = loaded
            got = resolve_sample(b_src, last=True)  # a Sample of no pages is falsy (len 0): compare with None
            b = got if got is not None else self._live(_pid(b_src), args)
        if a.pid != b.pid and not args.quiet:
            err.write(printable(f"pmaps: note: comparing different processes ({a.pid} {a.comm}, {b.pid} {b.comm})")
                      + "\n")
        return self._write(out, err, args, a, b, _label(args.a), _label(b_src))

    def _dataset(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        """Two samples of one process of a dataset: --at twice, once (that sample and the last), or
        the last two."""
        from ._dataset import Selection

        if args.b is not None:
            raise UsageError("a dataset diff takes its two samples from --at (twice), not from B")
        at = args.at or ["-2", "-1"]
        if len(at) > 2:
            raise UsageError("--at is given at most twice (A and B)")
        sel = Selection(args.a, args)
        if len(sel.proc.times_us) < 2 and not args.at:
            raise UsageError(f"{args.a}: pid {sel.proc.pid} has one sample on host {sel.host}: nothing to compare")
        times = sel.pick(at if len(at) == 2 else [at[0], "-1"])
        a, b = sel.load(times)
        return self._write(out, err, args, a, b, sel.label(times[0]), sel.label(times[1]))

    def _file_beside_live(self, args: argparse.Namespace, b_src: str) -> tuple[Sample, Sample]:
        """(A, B) when one is a live PID and the other a file: the file is loaded on a thread while
        the process is sampled (the sample's reads wait in the kernel; 65,531 VMAs: 0.37 -> 0.31 s).
        Errors come as if A were done first: A's, then B's."""
        from ..collector.parallel import background

        live_a = is_pid_text(args.a)
        src = b_src if live_a else args.a
        load = background(lambda: resolve_sample(src, last=not live_a))
        try:
            live = self._live(_pid(args.a if live_a else b_src), args)
        except BaseException:
            if not live_a and load() is None:  # A's error first, as when A was loaded before B was sampled
                raise _not_a_source(src) from None
            raise
        loaded = load()
        if loaded is None:  # neither a PID nor an existing file
            raise _not_a_source(src)
        return (live, loaded) if live_a else (loaded, live)

    @staticmethod
    def _live(pid: int, args: argparse.Namespace) -> Sample:
        from ..collector import Process, take_sample

        with Process(pid, Options.fields(args.fields)) as proc:
            return take_sample(proc)

    @staticmethod
    def _write(out: TextIO, err: TextIO, args: argparse.Namespace, a: Sample, b: Sample, la: str, lb: str) -> int:
        from ..analysis.diff import diff_samples
        from ..render import write
        from ..render.diff import DiffView

        d = diff_samples(a, b, a_label=f"{la} (pid {a.pid} {a.comm})", b_label=f"{lb} (pid {b.pid} {b.comm})",
                         all_flags=args.all_flags)
        write(DiffView(d), out, args.format, args.unit)
        return 0


def _pid(src: str) -> int:
    try:
        return parse_pid(src)
    except UsageError:
        raise _not_a_source(src) from None


def _not_a_source(src: str) -> UsageError:
    return UsageError(f"not a process ID, nor an existing sample file or recording: {src[:60]!r}")


def _label(src: str) -> str:
    return src if not is_pid_text(src) and (os.path.lexists(src) or "@" in src) else "live"


def resolve_sample(src: str, *, last: bool) -> Sample | None:
    """A sample file, a recording (its first or last sample; DIR@N picks sample N), or None for a
    PID. Digits are always a PID (./123 is the file)."""
    from ..store.recording import load_sample, sample_files

    if is_pid_text(src):
        return None
    path, at, idx = src.rpartition("@") if "@" in src else (src, "", "")
    if at and os.path.isdir(path):
        files = sample_files(path)
        try:
            return load_sample(files[int(idx)])
        except (ValueError, IndexError):
            raise UsageError(f"{path}: no sample {idx[:20]!r} (the recording has {len(files)})") from None
    if os.path.isdir(src):
        files = sample_files(src)
        return load_sample(files[-1] if last else files[0])
    if os.path.lexists(src):  # the loader says what is wrong with a FIFO, a device, a looping symlink
        if src.endswith(".npz"):  # a `pmaps save` snapshot: its pages become ranges
            from ..store.snapshot import load_sample as load_snapshot_sample

            return load_snapshot_sample(src)
        return load_sample(src)
    return None
