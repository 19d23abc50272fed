"""The pmaps command: a registry of subcommands, shared output options, errors -> exit codes.

Exit codes: 0 ok; 1 a file that cannot be read or written (output path, snapshot, recording);
2 usage; 3 no such process (or it exited mid-scan); 4 permission denied; 5 unsupported target or
kernel (kernel thread, zombie, no PAGEMAP_SCAN when forced); 6 corrupt snapshot; 7 several PIDs
given and some of them failed; 130 interrupted (SIGINT or SIGTERM).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import signal
import sys
from typing import Any, TextIO, cast

from . import commands as commands_pkg
from .commands import Command
from .errors import PmapsError
from .kernel import procfs
from .safetext import printable

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

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's formatter asks shutil for the terminal's width, and importing shutil (bz2,
        # lzma, ...) costs 3 ms of every start-up; argparse makes one per add_argument.
        return self.formatter_class(prog=self.prog, width=help_width())  # type: ignore[call-arg]


def help_width() -> int:
    """shutil.get_terminal_size().columns - 2, as argparse.HelpFormatter computes it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


def module_names() -> list[str]:
    """Command modules, without importing them: a command's module is named after it. The
    package's directory is listed (pkgutil.iter_modules imports inspect: 5 ms of start-up)."""
    return sorted({f[:-3] for d in commands_pkg.__path__ for f in os.listdir(d)
                   if f.endswith(".py") and not f.startswith("_")})


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


GLOBAL_FLAGS = ("-q", "--quiet", "-k", "-m", "-g", "--bytes")  # flags every command takes the same way


def _route(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """(argv for argparse, command modules to load). `pmaps PID...` means `pmaps show ...`."""
    if not argv or argv[0] in ("-h", "--help", "--version"):
        return argv, None
    # Output options before the command (`pmaps -q top`) belong to the command: move them after it.
    lead = 0
    while lead < len(argv) and argv[lead] in GLOBAL_FLAGS:
        lead += 1
    if lead and lead < len(argv) and argv[lead] in module_names():
        return [argv[lead], *argv[:lead], *argv[lead + 1:]], [argv[lead]]
    if argv[0] in module_names():
        return argv, [argv[0]]
    return [DEFAULT, *argv], [DEFAULT]


class OutputFailed(Exception):
    """Writing to standard output failed (closed, full, the reader left)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


class ClosedStream:
    """What stdout is when pmaps was started with it closed (`pmaps PID >&-`): every write fails."""

    def write(self, s: str) -> int:
        raise OSError(errno.EBADF, "it is closed")

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # not the bytes surrogateescape writes back


def _encodable(s: str, encoding: str) -> str:
    """`s` with the lone surrogates an encoder refuses written as \\uNNNN (and, for an encoding
    that cannot take the rest either, every unencodable character backslash-escaped)."""
    s = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
    try:
        s.encode(encoding, "surrogateescape")
    except UnicodeEncodeError:
        s = s.encode(encoding, "backslashreplace").decode(encoding)
    return s


class GuardedOut:
    """stdout with its write errors tagged, so that main tells them from every other error."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, s: str) -> int:
        try:
            try:
                return cast(int, self._f.write(s))
            except UnicodeEncodeError:
                # Not a closed stdout (UnicodeEncodeError is a ValueError): a lone surrogate that
                # only a crafted file holds (a JSON "\ud8ff" in a name), which no encoder writes.
                # Written as \uNNNN, as printable() shows it; the rest of the output stands.
                return cast(int, self._f.write(_encodable(s, getattr(self._f, "encoding", None) or "utf-8")))
        except OSError as e:
            raise OutputFailed(e) from e
        except ValueError as e:  # I/O on a closed file
            raise OutputFailed(OSError(errno.EBADF, "it is closed")) from e

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise OutputFailed(e) from e
        except ValueError as e:
            raise OutputFailed(OSError(errno.EBADF, "it is closed")) from e

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class QuietErr:
    """stderr that never stops the work: when it is closed or full the notes are lost, but a
    recording goes on (`pmaps record ... 2>&-`)."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, s: str) -> int:
        try:
            return cast(int, self._f.write(s)) if self._f is not None else len(s)
        except (OSError, ValueError):
            return len(s)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._f.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; every failure becomes one line on `err` and an exit code. One handler
    for standard output: EPIPE (the reader left) ends quietly, any other write error (closed,
    /dev/full) is one line and exit 1."""
    real = out is None
    gout = GuardedOut(out if out is not None else (sys.stdout or ClosedStream()))
    gerr = QuietErr(err if err is not None else sys.stderr)
    try:
        code = _main(argv, cast(TextIO, gout), cast(TextIO, gerr))
        gout.flush()
        return code
    except OutputFailed as e:
        if e.err.errno == errno.EPIPE:
            if real:  # `pmaps PID | head`: silence the flush at exit too
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
            return 0
        gerr.write(f"pmaps: cannot write to standard output: {e.err.strerror or e.err}\n")
        return 1


def _main(argv: list[str] | None, out: TextIO, err: TextIO) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        from . import __version__
        from .kernel.native import describe

        out.write(f"pmaps {__version__} ({describe()})\n")
        return 0
    if not argv:
        build_parser().print_help(err)
        return 2
    routed, modules = _route(argv)
    try:
        parser = build_parser(discover(modules) if modules else None)
        # argparse writes --help to sys.stdout and its errors to sys.stderr: make them ours.
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(routed)
    except SystemExit as e:  # argparse already printed its one-line error (or the help)
        return e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        return 130
    _SIGNALLED.clear()
    if getattr(signal.getsignal(signal.SIGINT), "__module__", "") == "pmaps._entry":
        # From here Ctrl-C raises KeyboardInterrupt (files being written are removed, the terminal
        # restored) and ends with exit 130 below, also inside the imports that commands make when
        # they run (after their first read has started: procfs.read_ahead).
        signal.signal(signal.SIGINT, _interrupt)
        sys.unraisablehook = _unraisable
    try:
        return int(args.cmd.run(args, out, err))
    except PmapsError as e:
        # One line, whatever the message quotes: paths, process names and files' text are anyone's.
        err.write(f"pmaps: {printable(str(e))}\n")
        return e.exit_code
    except KeyboardInterrupt:
        err.write("pmaps: interrupted\n")
        return 130
    except Exception as e:
        if _interrupted(e):  # Ctrl-C inside an extension's import (numpy makes it an ImportError)
            err.write("pmaps: interrupted\n")
            return 130
        raise
    finally:
        procfs.drop_ahead()  # a read ahead lives for its command only (main may run again in-process)


# Set by the handlers below: an error raised after one of them ran is the interruption's. numpy's
# import turns a KeyboardInterrupt into an ImportError, and not always with the interrupt in its
# chain (PyCapsule_Import: "could not import module 'datetime'").
_SIGNALLED: set[int] = set()


def _interrupted(e: BaseException | None) -> bool:
    if _SIGNALLED:
        return True
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, KeyboardInterrupt):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _interrupt(signum: int, frame: object) -> None:
    _SIGNALLED.add(signum)
    raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    """An interrupt raised where Python cannot raise it is raised again a moment later, in the main
    thread, instead of being printed and lost: a Ctrl-C that lands in a weakref callback of the
    import system (`_get_module_lock.<locals>.cb`: commands import numpy and their layers after
    their first read has started) or in a __del__."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import threading

        # A real SIGINT to the main thread, from another one: it also ends a sleep or a blocking read.
        main = threading.main_thread().ident
        assert main is not None
        threading.Timer(0.001, signal.pthread_kill, (main, signal.SIGINT)).start()
        return
    sys.__unraisablehook__(unraisable)


def _terminate(signum: int, frame: object) -> None:
    # `kill PID` ends pmaps as Ctrl-C does: temp files removed, the terminal restored.
    _interrupt(signum, frame)


def entry() -> None:
    # pmaps uses no BLAS; OpenBLAS's default thread pool would spin up a thread per core when numpy
    # is imported and compete with the kernel reads for the CPUs. Set for the command only: a
    # library user's process keeps its own settings.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    code = 130
    try:
        # Ctrl-C exits 130 at once until the command's modules are imported (pmaps._entry's
        # handler: nothing is written before); then it raises KeyboardInterrupt (see _main).
        signal.signal(signal.SIGTERM, _terminate)
        out: TextIO | None = None
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                # Started with fd closed (`>&-`): hold its number with /dev/null, or the first
                # file pmaps opens would become "stdout". A closed stdout still fails its writes.
                os.open(os.devnull, os.O_RDWR)
                if fd == 1:
                    out = cast(TextIO, ClosedStream())
        code = main(out=out)
    except KeyboardInterrupt:
        code = 130
    if code == 0 and signal.SIGTERM in _SIGNALLED:
        # watch and top --watch end on Ctrl-C as on q (exit 0): a SIGTERM is someone else
        # stopping them (a supervisor, a timeout): 130, as documented, as for every command.
        code = 130
    # Leave without the interpreter's teardown (freeing every array, joining idle reader
    # threads): tens of milliseconds of a command's run. Everything pmaps writes to files
    # is closed by then; only the standard streams need flushing (their errors were reported).
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception, KeyboardInterrupt):
            if f is not None:
                f.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
