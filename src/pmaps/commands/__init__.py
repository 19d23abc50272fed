"""One module per subcommand: a Command subclass with add_arguments() and run().

cli.py finds every Command subclass in this package by itself: adding a command is adding
a module here, named after the command (`pmaps NAME` imports only NAME.py). Import heavy
libraries inside run(), not at module level.
"""
from __future__ import annotations

import argparse
from typing import TextIO

FORMATS = ("text", "json", "ndjson", "csv")


class Command:
    """A subcommand: its help comes from the class docstring."""

    name = ""
    aliases: tuple[str, ...] = ()
    order = 50  # place in `pmaps --help`

    def add_arguments(self, p: argparse.ArgumentParser) -> None:  # pragma: no cover - interface
        pass

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:  # pragma: no cover
        raise NotImplementedError


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
