"""The docs are tested: every command has help and is documented; README examples run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmaps.cli import discover

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
GOLDEN = str(Path(__file__).parent / "golden" / "layout.npz")
COMMANDS = discover()


@pytest.mark.parametrize("cmd", [c.name for c in COMMANDS])
def test_every_command_has_help_and_docs(run, cmd, capsys):
    assert run(cmd, "--help").code == 0
    assert "usage: pmaps" in capsys.readouterr().out
    assert f"pmaps {cmd}" in README or (cmd == "show" and "pmaps PID" in README), f"README lacks 'pmaps {cmd}'"


def _examples() -> list[list[str]]:
    """`$ pmaps ... PID` lines of the README's console blocks that show one process."""
    out = []
    for line in re.findall(r"^\$ (pmaps [^\n]*)$", README, re.M):
        words = line.split()[1:]
        if words and words[-1].isdigit() and (words[0].startswith("-") or words[0].isdigit()):
            out.append(words[:-1] + [GOLDEN])
    return out


@pytest.mark.parametrize("argv", _examples(), ids=" ".join)
def test_readme_examples_run(run, argv):
    r = run(*argv)
    assert r.code == 0, r.err
    assert r.out


def test_examples_found():
    assert len(_examples()) >= 4


def test_help_lists_every_command(run, capsys):
    assert run("--help").code == 0
    text = capsys.readouterr().out
    for c in COMMANDS:
        assert c.name in text
