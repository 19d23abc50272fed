"""Shared fixtures: tests/ on sys.path (for memchild), a CLI runner."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from pmaps.cli import main  # noqa: E402


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root")
