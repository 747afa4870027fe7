"""Several `reprolib compute` processes of one paper and profile, started at the same moment on
one results folder (two terminals, a grid spread over machines sharing `results/`): every stage
is computed by exactly one of them, the others wait for its lock and reuse its record, and
nobody fails on another's temporary or checkpoint file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from reprolib import paths

N = 3
ARGS = ["compute", "quickstart", "-p", "widths=(0.25, 0.5)", "-p", "train.epochs=2",
        "-p", "image_size=8"]


@pytest.mark.slow
def test_identical_runs_at_once_compute_each_stage_once(tmp_path):
    env = {**os.environ, "REPROLIB_RESULTS": str(tmp_path / "results"),
           "REPROLIB_FIGURES": str(tmp_path / "figures"), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "reprolib", *ARGS], cwd=paths.ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(N)]
    outs = [p.communicate(timeout=900) for p in procs]
    did = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        m = re.search(r"2 stages in \d+ s \((\d+) computed, (\d+) reused(?:, (\d+) after waiting)?",
                      out)
        assert m, out
        computed, reused, waited = (int(g or 0) for g in m.groups())
        did.append((p.pid, computed, reused, waited, err.count("is computing this stage")))
    print("\n".join(f"process {pid}: computed {c}, reused {r} ({w} after waiting; "
                    f"{msg} waiting messages)" for pid, c, r, w, msg in did))
    assert sum(c for _, c, _, _, _ in did) == 2            # each stage once, in one process
    assert all(c + r == 2 for _, c, r, _, _ in did)
    assert sum(w for _, _, _, w, _ in did) >= 1             # someone waited for a lock
    recs = sorted((tmp_path / "results" / "quickstart" / "smoke").glob("*.json"))
    assert len(recs) == 2
    for r in recs:
        rec = json.loads(r.read_text())
        assert rec["metrics"]["epochs"] == 2 and len(rec["metrics"]["history"]) == 2
    left = [p.name for p in (tmp_path / "results").rglob("*") if p.name.endswith((".lock", ".tmp"))]
    assert not left, left
