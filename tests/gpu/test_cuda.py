"""The CUDA paths of fit, measure and the benchmark (``pytest -m gpu`` on a machine with a GPU;
skipped elsewhere): bf16 autocast, channels_last, torch.compile, CUDA peak memory, CUDA-event
timing, and no host-device synchronisation inside fit's training steps."""

import warnings

import pytest
import torch
import torch.nn as nn

import reprolib
from reprolib import data
from reprolib.core import measure
from reprolib.tools import bench
from reprolib.core.train import TrainConfig, fit

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _data(batch=64):
    return data.get_data("digits", 32, batch, device="cuda", seed=0)


def _recipe(**kw):
    return TrainConfig(**{"epochs": 3, "lr": 0.05, "progress": False, **kw})


def test_bf16_fit_learns_and_runs_under_autocast():
    torch.manual_seed(0)
    model = reprolib.create_model("small_cnn", width=0.5)
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    d = _data()
    res = fit(model, d, _recipe(amp=True, channels_last=False), device="cuda")
    assert torch.bfloat16 in seen                    # the forward ran in bf16
    assert next(model.parameters()).dtype == torch.float32   # master weights stay fp32
    assert res.acc > 50 and res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_channels_last_fit():
    torch.manual_seed(0)
    model = reprolib.create_model("small_cnn", width=0.5)
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_pre_hook(lambda m, i: seen.append(
        i[0].is_contiguous(memory_format=torch.channels_last)))
    res = fit(model, _data(), _recipe(amp=True, channels_last=True), device="cuda")
    w = conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and all(seen)
    assert res.acc > 50


def test_compiled_fit_matches_eager_closely():
    res = {}
    for comp in (False, True):
        torch.manual_seed(0)
        model = reprolib.create_model("small_cnn", width=0.5)
        res[comp] = fit(model, _data(), _recipe(epochs=2, amp=False, compile=comp),
                        device="cuda")
    assert res[True].acc > 50
    assert abs(res[True].history[-1]["train_loss"] - res[False].history[-1]["train_loss"]) < 0.1


def test_cuda_peak_memory_grows_with_the_batch():
    model = reprolib.create_model("small_cnn")
    p = sum(t.numel() * t.element_size() for t in model.parameters())
    m8 = measure.peak_memory(model, (3, 32, 32), 8, "cuda")
    m64 = measure.peak_memory(model, (3, 32, 32), 64, "cuda")
    assert m8 > 3 * p and m64 > m8                   # weights + grads + momentum + activations


def test_fit_steps_do_not_synchronise():
    """With CUDA's sync debug mode on, no synchronising call comes from fit's step loop
    (the per-epoch read-back and the data loader's index copies are outside train.py's loop
    body and are filtered by file)."""
    torch.manual_seed(0)
    model = reprolib.create_model("small_cnn", width=0.5)
    d = _data(batch=32)
    fit(model, d, _recipe(epochs=1), device="cuda")          # warm-up: cuDNN, allocator
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fit(model, d, _recipe(epochs=1), device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode("default")
    from_train = [str(x.message) for x in w if x.filename.endswith("reprolib/train.py")
                  and "synchroniz" in str(x.message)]
    assert len(d.train) > 40
    # per epoch: the metrics read-back of the training loop and of evaluate, not per step
    assert len(from_train) <= 3, from_train[:5]


def test_speedup_on_cuda_bf16():
    small = reprolib.create_model("small_cnn", width=0.25)
    big = reprolib.create_model("small_cnn", width=2.0)
    r = bench.speedup(big, small, (3, 32, 32), batch_size=256, device="cuda", amp=True,
                      repeats=10)
    assert r["device_type"] == "cuda" and r["precision"] == "bf16" and r["cuda"]
    assert r["speedup"] > 1 and r["efficiency"] > 0


def test_benchmark_gpu_profile_runs_one_family(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path / "f"))
    cfg = bench.get_config("gpu", groups=("vtp",), vtp_methods=("svd",), repeats=5,
                           large_repeats=3, train_repeats=3,
                           variants=("fp32", "bf16+cl", "bf16+cl+compile"))
    recs = bench.run(cfg)
    assert len(recs) == 3
    for v in cfg.variants:
        df = bench.table(cfg, v)
        assert len(df) == 4 and (df["large speedup"] > 0).all()
    assert any("cu" in p.name for p in bench.write_outputs(cfg))
