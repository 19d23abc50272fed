"""The docs are tested: every command has help and is documented; README examples run and print
what the README shows (same command, same table header: the shape, not the numbers)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pmaps.cli import discover

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
GOLDEN = Path(__file__).parent / "golden"
LAYOUT = str(GOLDEN / "layout.npz")
SCAN = str(GOLDEN / "sysscan.npz")
COMMANDS = discover()
# README examples that need a live target or write files: run elsewhere in the suite (test_shared,
# test_record, test_watch, test_wss, test_heatmap, test_explain, test_exporter), not from the README.
LIVE_ONLY = ("shared", "record", "watch", "wss", "heatmap", "explain", "exporter", "query")


def _blocks() -> list[tuple[list[str], list[str]]]:
    """(argv after 'pmaps', the lines the README shows after it) of every `$ pmaps ...` example."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        cur: list[str] | None = None
        for line in block.splitlines():
            if line.startswith("$ pmaps"):
                cur = []
                out.append((line.split()[2:], cur))
            elif cur is not None:
                cur.append(line)
    return out


def _runnable(argv: list[str]) -> list[str] | None:
    """The example made runnable here: PIDs become the golden snapshot, top/libs read the golden
    scan, diff the golden samples; None for examples that need a live process."""
    if argv and argv[0] in LIVE_ONLY:
        return None
    if argv and argv[0] in ("top", "libs"):
        return [*argv, "--load-scan", SCAN]
    if argv and argv[0] == "diff":
        return ["diff", *(str(GOLDEN / a) for a in argv[1:])]
    if argv and argv[0] == "phys":
        return argv
    if argv and argv[-1].isdigit():
        return [*argv[:-1], LAYOUT]
    return None


def _header(lines: list[str]) -> str | None:
    """The first table header line (upper-case column names, or --summary's), words only."""
    for ln in lines:
        words = ln.split()
        names = [w for w in words if w.isalpha()]
        if (len(names) >= 3 and all(w.isupper() for w in names)) or words[:2] == ["address", "perms"]:
            return " ".join(words)
    return None


EXAMPLES = [(argv, shown) for argv, shown in _blocks() if _runnable(argv) is not None]


@pytest.mark.parametrize("cmd", [c.name for c in COMMANDS])
def test_every_command_has_help_and_docs(run, cmd):
    r = run(cmd, "--help")
    assert r.code == 0
    assert "usage: pmaps" in r.out
    assert f"pmaps {cmd}" in README or (cmd == "show" and "pmaps PID" in README), f"README lacks 'pmaps {cmd}'"


@pytest.mark.parametrize("argv,shown", EXAMPLES, ids=[" ".join(a) for a, _ in EXAMPLES])
def test_readme_examples_run(run, argv, shown):
    if argv[0] == "phys" and not Path("/proc/kpageflags").exists():
        pytest.skip("no /proc/kpageflags")
    r = run(*_runnable(argv))
    assert r.code == 0, r.err
    assert r.out
    want = _header(shown)
    if want is not None:
        assert _header(r.out.splitlines()) == want, "the README shows another table than the command prints"
    else:  # the 2007 format: a maps line, then INDEX COUNT FLAGS MAPCOUNT lines
        assert re.search(r"^[0-9a-f]+-[0-9a-f]+ \S{4} ", r.out, re.M)
        assert re.search(r"^\d+ \d+ \S+ [\d?-]", r.out, re.M)


def test_examples_found():
    assert len(EXAMPLES) >= 8, [a for a, _ in EXAMPLES]
    assert {a[0] for a, _ in _blocks()} >= {"top", "libs", "shared", "phys", "record", "diff", "watch", "wss",
                                            "heatmap"}


def test_help_lists_every_command(run):
    r = run("--help")
    assert r.code == 0
    text = r.out
    for c in COMMANDS:
        assert c.name in text
