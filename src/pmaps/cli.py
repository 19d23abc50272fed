"""The pmaps command: a registry of subcommands, shared output options, errors -> exit codes.

Exit codes: 0 ok; 2 usage; 3 no such process (or it exited mid-scan); 4 permission denied;
5 unsupported target or kernel (kernel thread, zombie, no PAGEMAP_SCAN when forced);
6 corrupt snapshot; 7 several PIDs given and some of them failed; 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import TextIO

from . import commands as commands_pkg
from .commands import Command
from .errors import PmapsError

DEFAULT = "show"
EPILOG = """\
'pmaps PID...' means 'pmaps show PID...'. Run 'pmaps COMMAND --help' for a command's options,
'pmaps --legend' for the flag letters.
Exit codes: 0 ok, 2 usage, 3 no such process, 4 permission denied, 5 unsupported target or
kernel, 6 corrupt snapshot, 7 some of several PIDs failed, 130 interrupted."""


def discover() -> list[Command]:
    """Every Command subclass in a module of pmaps.commands, ordered by its `order`."""
    found: dict[str, Command] = {}
    for info in pkgutil.iter_modules(commands_pkg.__path__):
        mod = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Command) and obj is not Command and obj.name:
                found[obj.name] = obj()
    return sorted(found.values(), key=lambda c: (c.order, c.name))


COMMANDS: list[Command] = discover()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmaps", description="pmaps: a Linux process's memory, page by page.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        doc = (cmd.__doc__ or "").strip()
        p = sub.add_parser(cmd.name, aliases=list(cmd.aliases), help=doc.splitlines()[0] if doc else None,
                           description=doc)
        cmd.add_arguments(p)
        p.set_defaults(cmd=cmd)
    return parser


def _route(argv: list[str]) -> list[str]:
    """`pmaps PID...` and `pmaps --legend` mean `pmaps show ...`."""
    names = {n for c in COMMANDS for n in (c.name, *c.aliases)}
    if not argv or argv[0] in ("-h", "--help", "--version"):
        return argv
    if argv[0] in names:
        return argv
    return [DEFAULT, *argv]


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["--version"]:
        from . import __version__

        out.write(f"pmaps {__version__}\n")
        return 0
    if not argv:
        parser.print_help(err)
        return 2
    try:
        args = parser.parse_args(_route(argv))
    except SystemExit as e:  # argparse already printed its one-line error
        return int(e.code or 0)
    try:
        return args.cmd.run(args, out, err)
    except PmapsError as e:
        err.write(f"pmaps: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        err.write("pmaps: interrupted\n")
        return 130
    except BrokenPipeError:
        # `pmaps PID | head`: the reader left; not an error. Silence the flush at exit too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
