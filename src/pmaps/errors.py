"""Errors pmaps raises. Only cli.main() turns them into messages and exit codes.

UsageError belongs to the command layer: nothing below commands/ raises it."""
from __future__ import annotations

from .safetext import printable


class PmapsError(Exception):
    """Base of every error pmaps reports to the user."""

    exit_code = 1

    def __init__(self, msg: str, pid: int | None = None, path: str | None = None) -> None:
        super().__init__(msg)
        self.pid = pid
        self.path = path

    def __str__(self) -> str:
        # Messages quote paths, process names and files' text, which are anyone's: however the
        # message is printed, a control character in it shows escaped, never acts on the terminal.
        return printable(super().__str__())


class NoSuchProcess(PmapsError):
    """The PID does not exist, or exited while it was being read."""

    exit_code = 3


class ProcessGone(NoSuchProcess):
    """The process existed when the scan began and exited during it."""


class PidReused(ProcessGone):
    """The process exited and its PID now names another process (start time changed)."""


class AccessDenied(PmapsError):
    """The kernel refused (another user's process, or a root-only file)."""

    exit_code = 4


class Unsupported(PmapsError):
    """The target has no user memory (kernel thread, zombie) or the kernel lacks a feature."""

    exit_code = 5


class ZombieProcess(Unsupported):
    """The process has exited but was not reaped: its memory is gone."""


class KernelThread(Unsupported):
    """Kernel threads have no user address space."""


class BadSnapshot(PmapsError):
    """A snapshot or recording file is corrupt, truncated or of an unknown schema."""

    exit_code = 6


class MissingExtra(PmapsError):
    """An optional dependency is not installed (pip install 'pmaps[EXTRA]')."""

    exit_code = 5


class OutputExists(PmapsError):
    """An output path holds something pmaps must not replace or mix with."""

    exit_code = 2


class UsageError(PmapsError):
    """The command line is wrong in a way argparse cannot see (e.g. a non-numeric PID)."""

    exit_code = 2
