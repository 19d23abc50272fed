"""Re-capture tests/golden/time_a.parquet and time_b.parquet (two samples of one child) for the
golden diff and watch outputs (run as root):

    python tests/golden/capture_time.py

Only the child's own regions are kept; pid, comm and times are fixed so the goldens are stable.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from memchild import MemChild  # noqa: E402

from pmaps.collector import Process  # noqa: E402
from pmaps.collector import take_sample  # noqa: E402
from pmaps.store.recording import sample_bytes  # noqa: E402

LAYOUT = ["a:anon:64K", "b:anon:128K:skip=0-32", "z:zero:32K", "f:file:64K:read=2-6", "t:thp:2M"]


def keep_mine(s, mine):
    keep = [i for i, v in enumerate(s.vmas) if v.start in mine]
    sel = np.isin(s.vma, keep)
    remap = np.full(len(s.vmas), -1)
    remap[keep] = np.arange(len(keep))
    vmas = [s.vmas[i]._replace(path="/tmp/f.dat" if s.vmas[i].path.endswith("f.dat") else s.vmas[i].path)
            for i in keep]
    return replace(s, table=vmas, vma=remap[s.vma[sel]].astype(np.int32), vpn=s.vpn[sel], count=s.count[sel],
                   state=s.state[sel], mapcount=s.mapcount[sel], pid=4242, comm="memchild", cost=0.0125)


def main() -> None:
    with MemChild(LAYOUT) as mc, Process(mc.pid) as proc:
        mine = {r["start"] for r in mc.regions.values()}
        a = take_sample(proc, seq=0)
        mc.cmd("touch b 0 8")
        mc.cmd("free a 4 12")
        mc.cmd("touch z 0 2")
        mc.cmd("read f 8 10")
        b = take_sample(proc, seq=1)
    (HERE / "time_a.parquet").write_bytes(sample_bytes(replace(keep_mine(a, mine), time=1000.0)))
    (HERE / "time_b.parquet").write_bytes(sample_bytes(replace(keep_mine(b, mine), time=1002.5)))


if __name__ == "__main__":
    main()
