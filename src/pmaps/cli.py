"""The pmaps command: a registry of subcommands, shared output options, errors -> exit codes.

Exit codes: 0 ok; 1 a file that cannot be read or written (output path, snapshot, recording);
2 usage; 3 no such process (or it exited mid-scan); 4 permission denied; 5 unsupported target or
kernel (kernel thread, zombie, no PAGEMAP_SCAN when forced); 6 corrupt snapshot; 7 several PIDs
given and some of them failed; 130 interrupted (SIGINT or SIGTERM).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
from typing import TextIO

from . import commands as commands_pkg
from .commands import Command
from .errors import PmapsError

DEFAULT = "show"
EPILOG = """\
'pmaps PID...' means 'pmaps show PID...'. Run 'pmaps COMMAND --help' for a command's options,
'pmaps --legend' for the flag letters.
Exit codes: 0 ok, 1 a file cannot be read or written, 2 usage, 3 no such process, 4 permission
denied, 5 unsupported target or kernel, 6 corrupt snapshot, 7 some of several PIDs failed,
130 interrupted."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (it prints the whole usage block by default)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def module_names() -> list[str]:
    """Command modules, without importing them: a command's module is named after it."""
    return sorted(i.name for i in pkgutil.iter_modules(commands_pkg.__path__) if not i.name.startswith("_"))


def discover(names: list[str] | None = None) -> list[Command]:
    """Command subclasses in the given modules of pmaps.commands (all by default), by `order`.

    `pmaps PID` imports only the show module: every other command's imports stay off the
    start-up path.
    """
    found: dict[str, Command] = {}
    for name in module_names() if names is None else names:
        mod = importlib.import_module(f"{commands_pkg.__name__}.{name}")
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Command) and obj is not Command and obj.name:
                found[obj.name] = obj()
    return sorted(found.values(), key=lambda c: (c.order, c.name))


def build_parser(commands: list[Command] | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="pmaps", description="pmaps: a Linux process's memory, page by page.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in discover() if commands is None else commands:
        doc = (cmd.__doc__ or "").strip()
        p = sub.add_parser(cmd.name, aliases=list(cmd.aliases), help=doc.splitlines()[0] if doc else None,
                           description=doc)
        cmd.add_arguments(p)
        p.set_defaults(cmd=cmd)
    return parser


def _route(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """(argv for argparse, command modules to load). `pmaps PID...` means `pmaps show ...`."""
    if not argv or argv[0] in ("-h", "--help", "--version"):
        return argv, None
    if argv[0] in module_names():
        return argv, [argv[0]]
    return [DEFAULT, *argv], [DEFAULT]


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        from . import __version__

        out.write(f"pmaps {__version__}\n")
        return 0
    if not argv:
        build_parser().print_help(err)
        return 2
    routed, modules = _route(argv)
    parser = build_parser(discover(modules) if modules else None)
    try:
        args = parser.parse_args(routed)
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


def _terminate(signum: int, frame: object) -> None:
    # `kill PID` ends pmaps as Ctrl-C does: temp files removed, the terminal restored.
    raise KeyboardInterrupt


def entry() -> None:
    # pmaps uses no BLAS; OpenBLAS's default thread pool would spin up a thread per core when numpy
    # is imported and compete with the kernel reads for the CPUs. Set for the command only: a
    # library user's process keeps its own settings.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGTERM, _terminate)
    code = main()
    # Leave without the interpreter's teardown (freeing every array, joining idle reader
    # threads): tens of milliseconds of a command's run. Everything pmaps writes to files
    # is closed by then; only the standard streams need flushing.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
