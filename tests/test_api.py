"""The public API and the layering: what a notebook user and a newcomer rely on."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pmaps.numeric import arange_runs, consecutive_runs, merge_intervals, run_bounds

SRC = Path(__file__).resolve().parent.parent / "src" / "pmaps"
# Layers from the bottom; a module may import its own layer and those listed before it.
LAYERS = [{"errors", "lazy", "numeric", "safetext", "textrows"}, {"kernel"}, {"model"}, {"collector", "store"}, {"analysis"}, {"render"},
          {"commands", "cli", "__main__", "_entry", "__init__"}]


def _layer(name: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if name in names)


def test_imports_point_down():
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        top = rel.parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(rel.parts[: len(rel.parts) - node.level])
                target = (base + (node.module.split(".") if node.module else []))[:1]
                if target and target[0] not in (top,) and _layer(target[0]) > _layer(top):
                    bad.append(f"{rel}: from {'.' * node.level}{node.module or ''}")
    assert not bad, bad


def test_usage_errors_only_in_commands():
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("commands", "cli.py", "errors.py"):
            continue
        assert "UsageError" not in path.read_text(), rel


def test_public_api_is_lazy_and_typed():
    code = ("import sys, os, pmaps; assert 'numpy' not in sys.modules, 'import pmaps loads numpy';"
            "assert 'OPENBLAS_NUM_THREADS' not in os.environ;"
            "import pmaps.collector as m; assert m.__name__ == 'pmaps.collector';"
            "assert callable(pmaps.collect) and callable(pmaps.scan_system) and callable(pmaps.footprint);"
            "assert callable(pmaps.save) and callable(pmaps.load) and callable(pmaps.diff) and callable(pmaps.wss);"
            "assert set(pmaps.__all__) <= set(dir(pmaps))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (SRC / "py.typed").exists()


@pytest.mark.parametrize("command", ["show", "diff", "watch", "record", "save", "shared"])
def test_process_commands_parse_before_numpy(command):
    """A command that reads one process imports no numpy with its module: it parses its arguments
    and starts its first read (procfs.read_ahead) before numpy's 60-90 ms of imports, which then
    overlap that read (docs/architecture.md, "Start-up")."""
    code = (f"import sys, pmaps.cli, pmaps.commands.{command}, pmaps.collector;"
            "assert 'numpy' not in sys.modules, [m for m in sys.modules if m.startswith('pmaps.')]")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_page_sources_share_one_protocol(tmp_path):
    from pmaps.collector import Process
    from pmaps.model import PageSource, Snapshot

    def take(src: PageSource) -> list[int]:
        return [i for i, _ in src.chunks()]

    # A quiet child, not this process: pytest's own memory (pmaps' reader threads' stacks) moves.
    child = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with Process(child.pid) as proc:
            live = take(proc)
            snap = proc.snapshot()
    finally:
        child.kill()
        child.wait()
    assert isinstance(snap, Snapshot) and take(snap) == sorted(set(live))


def test_run_helpers():
    first, n = run_bounds(np.array([False, True, False, False, True]))
    assert first.tolist() == [0, 2, 5] and n.tolist() == [2, 3, 1]
    first, n = consecutive_runs(np.array([3, 4, 5, 9, 10, 12]))
    assert first.tolist() == [0, 3, 5] and n.tolist() == [3, 2, 1]
    assert [x.tolist() for x in consecutive_runs(np.zeros(0, dtype=np.int64))] == [[], []]
    s, e, seg = merge_intervals(np.array([0, 5, 8, 30]), np.array([4, 9, 10, 31]), gap=1)
    assert s.tolist() == [0, 30] and e.tolist() == [10, 31] and seg.tolist() == [0, 0, 0, 1]
    s, e, seg = merge_intervals(np.array([0, 5]), np.array([4, 6]))
    assert s.tolist() == [0, 5] and seg.tolist() == [0, 1]
    assert arange_runs(np.array([10, 20], dtype=np.uint64), np.array([2, 3])).tolist() == [10, 11, 20, 21, 22]


@pytest.mark.parametrize("fmt", ["text", "json", "ndjson", "csv"])
def test_one_write_dispatch(fmt):
    import io

    from pmaps.render import write
    from pmaps.render.rows import Col, RowsView

    v = RowsView("t/1", [Col("name", "NAME", left=True), Col("rss", "RSS", True)], [{"name": "a", "rss": 4096}],
                 {"name": "", "rss": 4096})
    out = io.StringIO()
    write(v, out, fmt, "k")
    assert out.getvalue().endswith("\n") and ("4" in out.getvalue())
