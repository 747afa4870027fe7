"""The small edges of the public API: a bad argument is one clear error (never a silent
truncation, a raw IndexError or a torch size-mismatch dump), a failing call leaves its model
as it was, and the rounding of the templates is not linear in the filter count."""

import json
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

import reprolib
from reprolib.core import measure
from reprolib.errors import ReprolibError
from reprolib.methods import decompose, templates, vtp
from reprolib.models import templates_cifar


def test_a_fractional_rank_is_refused_not_truncated():
    layer = nn.Linear(8, 6)
    with pytest.raises(ReprolibError, match="rank=2.5 must be a whole number"):
        decompose.decompose_linear(layer, "svd", 2.5)
    with pytest.raises(ReprolibError, match="rank=True must be a whole number"):
        decompose.factorize(np.ones((4, 4)), "svd", True)
    assert decompose.decompose_linear(layer, "svd", 2.0).rank == 2     # a whole float is fine
    with pytest.raises(ReprolibError, match=r"rank=7 must be in \[1, "):
        decompose.decompose_linear(layer, "svd", 7)


def test_decompose_model_matching_no_layer_says_so():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ReprolibError, match=r"no nn.Linear layer of this Sequential matches layers=\[.blocks.*"
                                            r"its linear layers: 0, 2"):
        decompose.decompose_model(model, "svd", 0.5)
    out = decompose.decompose_model(model, "svd", 0.25, layers=["0"])
    assert list(decompose.current_ranks(out)) == ["0"]


@pytest.mark.parametrize("bad", [[64, 2.7, 128], [64, True, 128], [64, 0, 128], [], [64, float("nan")]])
def test_filter_counts_must_be_whole_and_positive(bad):
    with pytest.raises(ReprolibError, match="positive whole counts"):
        templates.redistribute(bad, "uniform")


def test_whole_float_counts_are_accepted():
    assert templates.redistribute([64.0, 64, 128], "reverse") == [128, 64, 64]


def test_rounding_a_huge_deficit_is_fast_and_keeps_the_total():
    """A template that drives layers far below one filter takes the deficit from the largest
    layers: with 10^7 filters this took 10 s (one filter at a time); now a level search, so
    10^10 filters (~3 hours one at a time) take milliseconds (the bound is 1000x that, for a
    loaded machine)."""
    t0 = time.perf_counter()
    out = templates.redistribute([10**10, 1, 1, 5], "quadratic")
    assert time.perf_counter() - t0 < 30.0
    assert sum(out) == 10**10 + 7 and min(out) >= 1
    # the same result as taking one filter at a time from the largest (earlier on ties)
    vals, total = [40.6, -7.2, 3.1, -1.4, 12.9], 48
    slow = np.floor(np.asarray(vals) + 1e-9).astype(np.int64)
    slow[np.argsort(-(np.asarray(vals) - slow), kind="stable")[:total - slow.sum()]] += 1
    for i in np.flatnonzero(slow < 1):
        need, slow[i] = 1 - slow[i], 1
        for _ in range(need):
            slow[int(np.argmax(slow))] -= 1
    assert templates_cifar.round_preserving_sum(vals, total) == slow.tolist()
    with pytest.raises(ReprolibError, match="3 filters cannot give 4 layers"):
        templates_cifar.round_preserving_sum([1, 1, 1, 0], 3)


def test_latency_needs_at_least_one_repeat():
    m = nn.Linear(4, 2)
    with pytest.raises(ReprolibError, match="latency: repeats=0 must be an integer >= 1"):
        measure.latency(m, (4,), repeats=0)
    m.train()
    r = measure.latency(m, (4,), repeats=1, warmup=0)
    assert r["repeats"] == 1 and m.training            # left in the mode it was in


def test_count_flops_on_a_failing_forward_leaves_the_mode():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2)).train()
    with pytest.raises(RuntimeError):
        measure.count_flops(m, (4,))
    assert m.training and all(c.training for c in m)
    with pytest.raises(RuntimeError):
        measure.count_flops_by_module(m, (4,))
    assert m.training


def test_a_pruned_model_file_with_wrong_widths_names_the_layer(tmp_path):
    small = vtp.prune(vtp.attach_scores(reprolib.create_model("test_vit_cifar", num_classes=10)), 0.3)
    js = reprolib.save_compressed(small, tmp_path / "v")
    spec = json.loads(js.read_text())
    spec["kwargs"]["block_dims"][0][1] += 3
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match=r"layer blocks\.0\.mlp\.fc1 \(blocks\.0\.mlp\.fc1\.weight\): "
                                            r"the weights hold shape \(\d+, 64\), the architecture "
                                            r"in the JSON gives \(\d+, 64\)"):
        reprolib.load_compressed(tmp_path / "v")
    spec["kwargs"]["block_dims"][0][1] -= 3           # the true widths: the same model back
    js.write_text(json.dumps(spec))
    back, x = reprolib.load_compressed(tmp_path / "v").eval(), torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), small.eval()(x))
