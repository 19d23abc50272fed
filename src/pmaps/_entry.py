"""The `pmaps` executable's first module. Ctrl-C while Python imports pmaps (the first tens of
milliseconds) ends it with exit 130 and no traceback: nothing has been written yet. Imported only
by the executable (`pmaps`, `python -m pmaps`), never by the library: a library user's process
keeps its own SIGINT handler."""
import _signal  # type: ignore[import-not-found]  # not `signal`: its enums cost milliseconds of the window this closes
import os


def _during_startup(signum: int, frame: object) -> None:
    os._exit(130)


# Not when SIGINT is ignored: a command started in the background by a shell without job control
# (`pmaps ... &` in a script) inherits SIG_IGN, and keeps it, as Python itself does.
if _signal.getsignal(_signal.SIGINT) != _signal.SIG_IGN:
    _signal.signal(_signal.SIGINT, _during_startup)


def entry() -> None:
    from .cli import entry as run

    run()
