"""Counters against closed forms (1 multiply-add = 1 FLOP), latency and peak memory."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import reprolib
from reprolib.core import measure


def test_linear_and_conv_flops():
    assert measure.count_flops(nn.Linear(64, 32), (64,)) == 64 * 32
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    assert measure.count_flops(conv, (8, 20, 20)) == 16 * 8 * 9 * 10 * 10
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert measure.count_flops(dw, (8, 10, 10)) == 8 * 9 * 10 * 10
    assert measure.count_flops(nn.Linear(64, 32), (64,), batch_size=5) == 5 * 64 * 32


class _SDPA(nn.Module):
    def forward(self, x):  # x: (heads, n, d)
        return F.scaled_dot_product_attention(x, x, x)


class _Explicit(nn.Module):
    def forward(self, x):
        a = (x @ x.transpose(-1, -2)).softmax(-1)
        return a @ x


@pytest.mark.parametrize("mod", [_SDPA(), _Explicit()])
def test_attention_matmuls_are_counted(mod):
    h, n, d = 3, 49, 32
    assert measure.count_flops(mod, (h, n, d)) == 2 * h * n * n * d  # QK^T and AV


def test_swin_t_matches_table_one_baseline():
    import timm

    m = timm.create_model("swin_tiny_patch4_window7_224", num_classes=100)
    assert round(measure.count_params(m) / 1e6, 2) == 27.60
    assert round(measure.count_flops(m, (3, 224, 224)) / 1e9, 2) == 4.49


def test_flops_by_module_sum():
    m = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    by = measure.count_flops_by_module(m, (10,))
    assert by[""] == 10 * 20 + 20 * 5 and by["0"] == 200 and by["2"] == 100


def test_shared_parameters_count_once():
    lin = nn.Linear(10, 10)
    m = nn.Sequential(lin, lin)
    assert measure.count_params(m) == 110


def test_peak_memory_closed_form_linear():
    # weights + momentum + gradient of a 1000x1000 layer, plus input/output/logit grads (tiny)
    w = 1000 * 1000 * 4
    peak = measure.peak_memory(nn.Linear(1000, 1000, bias=False), (1000,), 1)
    assert 3 * w <= peak <= 3 * w + 50_000


def test_peak_memory_grows_with_batch():
    m = reprolib.create_model("test_small_cnn")
    a, b = (measure.peak_memory(m, (3, 16, 16), bs) for bs in (8, 32))
    assert b > a


def test_latency_and_measure_model():
    lat = measure.latency(nn.Linear(32, 32), (32,), batch_size=4, repeats=5)
    assert lat["ms"] > 0 and lat["batch_size"] == 4 and lat["device"] == "cpu"
    model = reprolib.create_model("test_small_cnn")
    prof = measure.measure_model(model, (3, 16, 16), latency_repeats=3, memory_batch=4)
    assert set(prof) >= {"params", "flops", "latency_ms", "latency_us_per_image",
                         "peak_memory_bytes"}
    assert prof["params"] == measure.count_params(model)
    assert prof["flops"] == measure.count_flops(model, (3, 16, 16))
    assert "latency_ms" not in measure.measure_model(model, (3, 16, 16), latency_repeats=0)


def test_interleaved_rotates_the_order_and_keeps_every_time():
    """The one timing (latency and the bench): warm-up rounds, then rounds whose order
    rotates, median and IQR as ``ms`` / ``ms_iqr``."""
    calls = []
    res = measure.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              "cpu", warmup=1, repeats=4)
    assert calls[:2] == ["a", "b"]                     # warm-up
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(res["a"]["times_ms"]) == 4 and res["a"]["ms_iqr"] >= 0
    assert measure.median_iqr([2.0]) == {"ms": 2.0, "ms_iqr": 0.0, "times_ms": [2.0]}
    assert measure.median_iqr([1.0, 2.0, 3.0, 4.0, 5.0])["ms_iqr"] == 3.0
    with pytest.raises(reprolib.ReprolibError, match="repeats=0"):
        measure.interleaved({"a": lambda: None}, "cpu", repeats=0)


def test_latency_times_through_interleaved(monkeypatch):
    seen = []
    orig = measure.interleaved

    def spy(fns, *a, **kw):
        seen.append(list(fns))
        return orig(fns, *a, **kw)

    monkeypatch.setattr(measure, "interleaved", spy)
    lat = measure.latency(nn.Linear(8, 8), (8,), repeats=3, warmup=1)
    assert seen == [["model"]] and lat["repeats"] == 3 and lat["ms_iqr"] >= 0


def test_on_meta_builds_the_same_shapes_without_running_the_initialisers():
    from reprolib.core.device import on_meta
    from reprolib.core.measure import count_flops, count_flops_by_op
    from reprolib.core.registry import create_model

    for name, kw in (("swin_tiny_test", {}), ("resnet_pe_test", {}), ("vit_pe_test", {})):
        with torch.device("meta"):
            plain = create_model(name, **kw)
        with on_meta():
            fast = create_model(name, **kw)
        shapes = lambda m: [(k, tuple(v.shape), v.dtype, v.is_meta)   # noqa: E731
                            for k, v in m.state_dict(keep_vars=True).items()]
        assert shapes(fast) == shapes(plain) and all(s[3] for s in shapes(fast))
        assert measure.count_params(fast) == measure.count_params(plain)
        size = (3, 32, 32)
        assert count_flops(fast, size) == count_flops(plain, size) > 0
        assert sum(count_flops_by_op(fast, size).values()) // 2 == count_flops(fast, size)
    # outside the meta device nothing is skipped: a CPU tensor is still initialised
    with on_meta():
        t = torch.zeros(3, device="cpu")
        t.add_(1.0)
        torch.nn.init.constant_(t, 2.0)
    assert t.tolist() == [2.0, 2.0, 2.0]
