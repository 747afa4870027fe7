"""The same config gives the same numbers: one small training stage of every paper, run twice,
each time in a fresh Python process with its own empty results folder, writes identical
records apart from timings.

Every Stage seeds torch, NumPy and ``random`` from its config's seed before it runs
(``reprolib.experiments.common.Stage.run``), and ``fit`` reseeds each epoch, so model
initialisation, data order, augmentation and dropout follow the config alone; a fresh process
has a different ``torch.initial_seed()``, which is what this test would catch.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from reprolib import paths

#: (paper, stage name, smoke overrides): one stage that builds and trains a model per paper.
STAGES = [
    ("quickstart", "small_cnn-w0.25", {"train.epochs": 1}),
    ("sidt", "search", {"search.epochs": 1}),
    ("pe", "vit_pe_test", {"vit_train.epochs": 1}),
    ("vtp_svd", "dense-p4", {"patch_sizes": (4,), "pretrain.epochs": 1}),
    ("metaformer_nas", "retrain-pooling", {"retrain.epochs": 1}),
    ("templates", "vgg19_cifar_tiny-base-w0.125-digits", {"train.epochs": 1}),
]

#: Keys whose values are clock readings (timings, when a run started): left out of the comparison.
TIMING = re.compile(r"(^|_)(time|times|wall|started|latency|ms|s|seconds|iqr)(_|$)|latency"
                    r"|^git$")   # and the commit the code was at (provenance, not a result)

_RUN = textwrap.dedent("""
    import json, sys
    from reprolib.configs import get_config
    from reprolib.experiments import get_experiment
    out = {}
    for paper, name, over in json.loads(sys.argv[1]):
        cfg = get_config(paper, "smoke", **over)
        stage = {s.name: s for s in get_experiment(paper).stages(cfg)}[name]
        out[paper] = stage.run()
    print(json.dumps(out))
""")


def _strip(obj):
    """``obj`` without timing keys; floats as-is (identical means identical)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _diff(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _diff(a.get(k), b.get(k), f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _diff(x, y, f"{where}[{i}]")
    elif a != b and not (isinstance(a, float) and isinstance(b, float)
                         and math.isnan(a) and math.isnan(b)):
        yield f"{where}: {a!r} != {b!r}"


def _fresh_run(tmp_path, tag: str) -> dict:
    env = {**os.environ, "REPROLIB_RESULTS": str(tmp_path / tag / "results"),
           "REPROLIB_FIGURES": str(tmp_path / tag / "figures")}
    out = subprocess.run([sys.executable, "-c", _RUN, json.dumps(STAGES)], capture_output=True,
                         text=True, timeout=900, env=env, cwd=paths.ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_stage_of_every_paper_is_identical_in_two_fresh_processes(tmp_path):
    a, b = _fresh_run(tmp_path, "a"), _fresh_run(tmp_path, "b")
    assert sorted(a) == sorted(p for p, _, _ in STAGES)
    for paper, name, _ in STAGES:
        ra, rb = _strip(a[paper]), _strip(b[paper])
        assert ra["run_id"] == rb["run_id"]
        diffs = list(_diff(ra, rb))
        assert not diffs, f"{paper}/{name} differs between two fresh runs: {diffs[:5]}"
        # the comparison is not vacuous: real trained numbers are in it
        m = ra["metrics"]
        acc = m.get("acc")
        assert isinstance(acc, float) and 0 < acc <= 100, (paper, sorted(m))
        print(f"{paper}/{name}: acc {acc:.4f} %, {len(json.dumps(ra))} bytes of record "
              f"identical in both runs")
