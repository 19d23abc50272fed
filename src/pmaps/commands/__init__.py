"""One module per subcommand: a Command subclass with add_arguments() and run().

cli.py finds every Command subclass in this package by itself: adding a command is adding
a module here, named after the command (`pmaps NAME` imports only NAME.py). Import heavy
libraries inside run(), not at module level.
"""
from __future__ import annotations

import abc
import argparse
import math
from typing import TextIO

FORMATS = ("text", "json", "ndjson", "csv")


class Command(abc.ABC):
    """A subcommand: its help comes from the class docstring."""

    name = ""
    aliases: tuple[str, ...] = ()
    order = 50  # place in `pmaps --help`

    def add_arguments(self, p: argparse.ArgumentParser) -> None:  # pragma: no cover - interface
        """Add the command's own options (the shared ones come from add_output_options)."""
        return None

    @abc.abstractmethod
    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        """Do the work, write to out (data) and err (notes); return the exit code."""


def seconds(text: str, zero: bool = False) -> float:
    """argparse type: a positive, finite number of seconds (nan and inf would spin or overflow sleep)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(v) and (0 <= v if zero else 0 < v) and v <= 1e6):
        raise argparse.ArgumentTypeError(f"must be a {'' if zero else 'positive '}number of seconds "
                                         f"{'from 0 ' if zero else ''}up to 1e6: {text!r}")
    return v


def seconds_or_zero(text: str) -> float:
    return seconds(text, zero=True)


def size(text: str) -> int:
    """argparse type: a byte count, with an optional K, M, G or T suffix (powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t[-1:] in ("K", "M", "G", "T"):
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        v = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size (like 512M or 2G): {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return v * mult


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return v


def add_output_options(p: argparse.ArgumentParser, formats: tuple[str, ...] = FORMATS, units: bool = True) -> None:
    """The one set of output options every command shares."""
    p.add_argument("--format", choices=formats, default=formats[0], help="output format (default %(default)s)")
    if units:
        g = p.add_mutually_exclusive_group()
        g.set_defaults(unit="human")
        g.add_argument("-k", dest="unit", action="store_const", const="k", help="sizes in KiB")
        g.add_argument("-m", dest="unit", action="store_const", const="m", help="sizes in MiB")
        g.add_argument("-g", dest="unit", action="store_const", const="g", help="sizes in GiB")
        g.add_argument("--bytes", dest="unit", action="store_const", const="bytes", help="sizes in bytes")
    p.add_argument("-q", "--quiet", action="store_true", help="no notes on stderr about what cannot be known")


def percent(text: str) -> float:
    """argparse type: a CPU share in percent of one core, above 0 and at most 100."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(v) and 0 < v <= 100):
        raise argparse.ArgumentTypeError(f"must be a percentage above 0 and at most 100: {text!r}")
    return v


def add_cpu_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-cpu", type=percent, metavar="PCT",
                   help="CPU budget in percent of one core: when samples cost more, the interval stretches")


def budget_interval(interval: float, cost: float, max_cpu: float | None) -> float:
    """The interval that keeps a sample of `cost` seconds within `max_cpu` percent of one core."""
    return interval if not max_cpu else max(interval, cost * 100.0 / max_cpu)
