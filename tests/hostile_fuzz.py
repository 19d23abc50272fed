"""The fuzz runner of test_hostile_files.py: mutate a real snapshot, sample or manifest many
times and put every mutation through the readers, in this one process (a batch, not a CLI
process per case), under an address-space limit, one JSON line per case on stdout.

    python tests/hostile_fuzz.py '{"kind": "snapshot", "good": PATH, "seed": 1, "start": 0, "count": 320,
                                   "tmp": DIR, "rlimit": 3221225472, "timeout": 10}'

Each line: {"case": i, "mutation": NAME, "outcome": "ok" | "bad" | "fail", "detail": ...}.
"ok": read and rendered (code 0); "bad": refused with exit 6 and one line naming the file;
"fail": anything else (a traceback, another exit code, a message of several lines).
The parent (the test) notices a hang or a crash by the missing line and restarts after it.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import random
import resource
import signal
import sys
import traceback
import zlib
from pathlib import Path
from typing import Any

HOSTILE = [None, True, -1, 0, 2 ** 64, 2 ** 70, 10 ** 400, 1e300, math.inf, -math.inf, math.nan, "", "x" * 5000,
           "$\\frac{$", "<s>x&y\"</s>", "\x1b[2J", [], {}, [[[]]], -4096, 4096.5, "12", [1, 2, 3]]


class CaseTimeout(Exception):
    pass


def _paths(obj: Any, prefix: tuple = (), depth: int = 0) -> list[tuple]:
    out = [prefix] if prefix else []
    if depth > 3:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k), depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            out += _paths(v, (*prefix, i), depth + 1)
    return out


def mutate_json(doc: Any, rng: random.Random) -> tuple[Any, str]:
    doc = json.loads(json.dumps(doc))
    paths = _paths(doc)
    path = rng.choice(paths)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    how = rng.random()
    if how < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
        return doc, f"del {path}"
    v = rng.choice(HOSTILE)
    parent[path[-1]] = v
    return doc, f"set {path}={str(v)[:20]}"


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.choice(("flip", "truncate", "insert", "zero", "duplicate"))
    n = len(b)
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            b[i] ^= rng.randint(1, 255)
    elif op == "truncate":
        del b[rng.randrange(n):]
    elif op == "insert":
        i = rng.randrange(n + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    elif op == "zero":
        i = rng.randrange(n)
        j = min(n, i + rng.randint(1, 256))
        b[i:j] = bytes(j - i)
    else:
        i = rng.randrange(n)
        j = min(n, i + rng.randint(1, 512))
        b[j:j] = b[i:j]
    return bytes(b), op


# -- per kind: the good file's parts, a mutation, and the readers --------------------------------
class Snapshot:
    def __init__(self, good: Path) -> None:
        import numpy as np

        self.raw = good.read_bytes()
        with np.load(good) as z:
            self.cols = {k: z[k] for k in z.files}
        self.meta = json.loads(bytes(self.cols.pop("meta")))

    def pack(self, meta: Any, cols: dict) -> bytes:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **cols)
        return buf.getvalue()

    def mutate(self, rng: random.Random) -> tuple[bytes, str]:
        import numpy as np

        r = rng.random()
        if r < 0.45:
            return mutate_bytes(self.raw, rng)
        if r < 0.8:
            meta, what = mutate_json(self.meta, rng)
            return self.pack(meta, self.cols), what
        cols = dict(self.cols)
        k = rng.choice(sorted(cols))
        c = cols[k]
        op = rng.choice(("reverse", "shift", "short", "float", "huge", "drop", "2d"))
        if op == "reverse":
            cols[k] = c[::-1].copy()
        elif op == "shift":
            cols[k] = c.astype(np.uint64) + np.uint64(1 << 40)
        elif op == "short":
            cols[k] = c[: len(c) // 2]
        elif op == "float":
            cols[k] = c.astype(np.float64)
        elif op == "huge":
            cols[k] = np.full(len(c), 2 ** 63 + 5, dtype=np.uint64)
        elif op == "drop":
            del cols[k]
        else:
            cols[k] = np.stack([c, c])
        return self.pack(self.meta, cols), f"column {k} {op}"

    def read(self, path: Path) -> tuple[int, str]:
        from pmaps.cli import main

        err = io.StringIO()
        code = main([str(path)], io.StringIO(), err)
        if code == 0:
            code = main(["--summary", "--format", "json", str(path)], io.StringIO(), err)
        return code, err.getvalue()


class SampleKind:
    def __init__(self, good: Path) -> None:
        import pyarrow.parquet as pq

        self.good = good
        self.raw = good.read_bytes()
        self.table = pq.read_table(good)
        self.meta = json.loads(zlib.decompress(base64.b64decode(self.table.schema.metadata[b"pmaps"])))

    def pack(self, table: Any, meta: Any) -> bytes:
        import pyarrow.parquet as pq

        t = table.replace_schema_metadata({b"pmaps": base64.b64encode(zlib.compress(json.dumps(meta).encode()))})
        buf = io.BytesIO()
        pq.write_table(t, buf)
        return buf.getvalue()

    def mutate(self, rng: random.Random) -> tuple[bytes, str]:
        import pyarrow as pa

        r = rng.random()
        if r < 0.45:
            return mutate_bytes(self.raw, rng)
        if r < 0.8:
            meta, what = mutate_json(self.meta, rng)
            return self.pack(self.table, meta), what
        t = self.table
        name = rng.choice(t.column_names)
        i = t.column_names.index(name)
        n = len(t)
        op = rng.choice(("reverse", "huge", "negative", "string", "null", "drop", "extra"))
        if op == "reverse":
            t = t.set_column(i, name, pa.array(t.column(name).to_pylist()[::-1], t.column(name).type))
        elif op == "huge":
            t = t.set_column(i, name, pa.array([2 ** 63] * n, pa.uint64()))
        elif op == "negative":
            t = t.set_column(i, name, pa.array([-5] * n, pa.int64()))
        elif op == "string":
            t = t.set_column(i, name, pa.array(["x"] * n, pa.string()))
        elif op == "null":
            t = t.set_column(i, name, pa.array([None] * n, pa.uint64()))
        elif op == "drop":
            t = t.remove_column(i)
        else:
            t = t.append_column("extra", pa.array([1] * n, pa.int8()))
        return self.pack(t, self.meta), f"column {name} {op}"

    def read(self, path: Path) -> tuple[int, str]:
        from pmaps.cli import main
        from pmaps.errors import BadSnapshot
        from pmaps.render.heatmap import build
        from pmaps.store.recording import load_sample

        err = io.StringIO()
        code = main(["diff", str(path), str(self.good)], io.StringIO(), err)
        if code == 0:
            try:  # the heatmap's reader and its picture's arithmetic (no matplotlib: seconds per case)
                build([load_sample(path), load_sample(self.good)], 300)
            except BadSnapshot as e:  # diff read it: so must this
                return 99, f"heatmap refused what diff took: {e}\n"
        return code, err.getvalue()


class ManifestKind:
    def __init__(self, good: Path) -> None:
        self.raw = good.read_bytes()
        self.doc = json.loads(self.raw)

    def mutate(self, rng: random.Random) -> tuple[bytes, str]:
        r = rng.random()
        if r < 0.5:
            return mutate_bytes(self.raw, rng)
        doc, what = mutate_json(self.doc, rng)
        return json.dumps(doc).encode(), what

    def read(self, path: Path) -> tuple[int, str]:
        from pmaps.commands.heatmap import title_of
        from pmaps.store.recording import read_manifest

        m = read_manifest(path.parent)
        title_of(m, 4242, "x", 3)
        return 0, ""


KINDS = {"snapshot": (Snapshot, "x.npz"), "sample": (SampleKind, "sample-000000.parquet"),
         "manifest": (ManifestKind, "manifest.json")}


def main() -> None:
    job = json.loads(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (job["rlimit"], job["rlimit"]))
    cls, fname = KINDS[job["kind"]]
    kind = cls(Path(job["good"]))

    def alarm(signum: int, frame: object) -> None:
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, alarm)
    for i in range(job["start"], job["count"]):
        rng = random.Random(job["seed"] * 1_000_003 + i)
        d = Path(job["tmp"]) / f"case{i}"
        d.mkdir(exist_ok=True)
        path = d / fname
        data, what = kind.mutate(rng)
        path.write_bytes(data)
        signal.setitimer(signal.ITIMER_REAL, job["timeout"])
        try:
            code, err = kind.read(path)
            lines = [ln for ln in err.splitlines() if ln.strip()]
            if code == 0:
                outcome, detail = "ok", ""
            elif code == 6 and len(lines) == 1 and lines[0].startswith("pmaps: ") and str(path) in lines[0]:
                outcome, detail = "bad", lines[0]
            else:
                outcome, detail = "fail", f"exit {code}: {err[-2000:]}"
        except CaseTimeout:
            outcome, detail = "timeout", ""
        except BaseException:
            outcome, detail = "fail", traceback.format_exc()[-3000:]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
        print(json.dumps({"case": i, "mutation": what, "outcome": outcome, "detail": detail}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
