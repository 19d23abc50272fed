"""Shared fixtures: tests/ on sys.path (for memchild), a CLI runner."""
from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from pmaps.cli import main  # noqa: E402

# A test runner started in the background by a shell without job control (`.ci/run &` in a script)
# has SIGINT ignored, and every pmaps it spawns would inherit that (pmaps keeps an inherited SIG_IGN,
# as Python does): the tests of Ctrl-C want the pmaps a terminal starts.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run():
    """Run the CLI in-process: run("--summary", "123") -> Result(code, out, err)."""

    def _run(*argv: str, env: dict[str, str] | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        old = dict(os.environ)
        os.environ.update(env or {})
        try:
            code = main(list(argv), out, err)
        finally:
            os.environ.clear()
            os.environ.update(old)
        return Result(code, out.getvalue(), err.getvalue())

    return _run


@pytest.fixture(scope="session")
def wait_for():
    """Wait for an observable event, not for a guessed time: wait_for(cond, what, timeout=60)
    polls cond() until it returns something true and returns that; past the (generous) timeout
    the test fails naming `what`."""

    def _wait(cond: Callable[[], object], what: str, timeout: float = 60.0, step: float = 0.01) -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
            time.sleep(step)

    return _wait


@pytest.fixture(params=["pure", "core"])
def kpage_path(request, monkeypatch):
    """Run a test by kpage's pure path and by its compiled core (kernel/_kpage.c; PMAPS_PURE decides
    per reader): the core's case is skipped where it is not built (tests/test_kpage_core.py fails
    then, where a C compiler is). Returns the core, or None for the pure path."""
    from pmaps.kernel import native

    if request.param == "pure":
        monkeypatch.setenv(native.PURE_ENV, "1")
        return None
    monkeypatch.delenv(native.PURE_ENV, raising=False)
    core = native.load()
    if core is None:
        pytest.skip("the compiled core is not built")
    return core


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root")
