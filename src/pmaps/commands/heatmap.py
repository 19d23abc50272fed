"""pmaps heatmap DIR -o FILE: a recording as a picture, address x time, coloured by page state."""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from ..errors import UsageError
from . import Command, positive
from ._common import add_force_option, add_selector_options, selector_given


def title_of(manifest: dict[str, Any], pid: int, comm: str, n: int, where: str = "") -> str:
    """The picture's title. The manifest is advisory (samples are self-describing): a damaged one
    (read_manifest keeps only its checked fields) costs the title a detail."""
    interval = manifest.get("interval")
    return f"pmaps heatmap: pid {pid} ({comm}){where}, {n} samples" + (
        f", every {interval:g}s" if isinstance(interval, float) and interval > 0 else "")


class Heatmap(Command):
    """Draw a recording: populated address space (holes squeezed) x time, coloured by state.

    DIR is a recording, or a fleet dataset's ROOT (record --dataset): then --host, --pid and
    --start-ticks choose the process when it holds several, --since/--until its samples.
    States: absent, present, dirty, swapped, THP; each cell mixes the colours of its pages.
    FILE ends in .png, .svg or .html (new, or a regular file with --force; 0600). Samples that
    fail validation are skipped with a count on stderr. Needs matplotlib (pip install 'pmaps[plot]').
    """

    name = "heatmap"
    order = 34

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("recording", metavar="DIR", help="a recording (record -o), or a dataset ROOT (record --dataset)")
        p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png, FILE.svg or FILE.html")
        p.add_argument("--width", type=positive, default=1200, metavar="PX", help="address columns (default 1200)")
        add_force_option(p)
        add_selector_options(p, at=False)

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        from ..render.heatmap import build, render
        from ..store import save_bytes
        from ..store.dataset import is_dataset
        from ..store.recording import load_recording, read_manifest

        fmt = args.output.rpartition(".")[2]
        if fmt not in ("png", "svg", "html"):
            raise UsageError("the output must end in .png, .svg or .html")
        from ..store.files import check_output

        check_output(args.output, args.force)  # refused now, not after the samples are read
        if is_dataset(args.recording):
            from ._dataset import Selection

            sel = Selection(args.recording, args)
            samples = sel.load(sel.between(args.since, args.until))
            manifest: dict[str, Any] = {}
            where = f" on {sel.host}"
        else:
            if (opt := selector_given(args)) is not None:
                raise UsageError(f"{opt} chooses samples of a dataset ROOT (record --dataset): "
                                 f"{args.recording[:60]!r} is not one")
            samples, bad = load_recording(args.recording)
            if bad:
                err.write(f"pmaps: skipped {len(bad)} of {len(samples) + len(bad)} samples that fail validation "
                          f"(first: {bad[0]})\n")
            manifest, where = read_manifest(args.recording), ""
        try:
            heat = build(samples, args.width)
        except ValueError as e:
            raise UsageError(str(e)) from None
        s = samples[0]
        title = title_of(manifest, s.pid, s.comm, len(samples), where)
        # 0600 like every file pmaps writes: the picture carries the process name and its paths.
        save_bytes(args.output, render(heat, fmt, title), force=args.force)
        err.write(f"pmaps: wrote {args.output} ({len(samples)} samples, {heat.total_pages} populated pages, "
                  f"{heat.pages_per_px:.1f} pages per column)\n")
        return 0
