"""The one on-disk format of every compressed model: architecture JSON + safetensors.

Paper-specific round trips (pruned Swin, pruned and decomposed ViT, ViT-PE, searched
MetaFormer, template CNNs) are in each paper's unit tests; here the mechanism itself."""

import json

import pytest
import torch
import torch.nn as nn

import reprolib
from reprolib.core.compressed import add_arch, register_arch, spec_of
from reprolib.errors import ReprolibError
from reprolib.core.measure import count_params


def _same(a, b, size=(2, 3, 32, 32)):
    x = torch.randn(*size)
    return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


def test_round_trip_keeps_function_and_builder(tmp_path):
    m = reprolib.create_model("test_small_cnn")
    js = reprolib.save_compressed(m, tmp_path / "cnn")
    assert js.name == "cnn.json" and (tmp_path / "cnn.safetensors").exists()
    spec = json.loads(js.read_text())
    assert spec["builder"] == "test_small_cnn" and spec["params"] == count_params(m)
    m2 = reprolib.load_compressed(tmp_path / "cnn.json")
    assert _same(m, m2)
    assert spec_of(m2)["builder"] == "test_small_cnn"


def test_tied_weights_stay_one_tensor(tmp_path):
    m = reprolib.create_model("resnet_pe_test")
    reprolib.save_compressed(m, tmp_path / "pe")
    m2 = reprolib.load_compressed(tmp_path / "pe")
    assert count_params(m2) == count_params(m)          # shared tensors counted once
    assert _same(m, m2)


def test_arch_steps_are_replayed(tmp_path):
    calls = []

    @register_arch("test_widen_head")
    def _widen(model, step):
        calls.append(step["n"])
        model.head = nn.Linear(model.head.in_features, step["n"])
        return model

    m = reprolib.create_model("test_small_cnn")
    m.head = nn.Linear(m.head.in_features, 7)
    add_arch(m, "test_widen_head", n=7)
    reprolib.save_compressed(m, tmp_path / "w")
    m2 = reprolib.load_compressed(tmp_path / "w")
    assert calls == [7] and m2.head.out_features == 7 and _same(m, m2)


def test_bad_files_are_one_clear_error(tmp_path):
    m = reprolib.create_model("test_small_cnn")
    reprolib.save_compressed(m, tmp_path / "m")
    with pytest.raises(ReprolibError, match="compressed-model file .*nope.json does not exist"):
        reprolib.load_compressed(tmp_path / "nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ReprolibError, match="bad.json is corrupt"):
        reprolib.load_compressed(tmp_path / "bad")
    st = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(st[: len(st) // 2])      # truncated
    with pytest.raises(ReprolibError, match="m.safetensors do not fit"):
        reprolib.load_compressed(tmp_path / "m")
    reprolib.save_compressed(m, tmp_path / "m")
    spec = json.loads((tmp_path / "m.json").read_text())
    spec["kwargs"]["width"] = 0.5                                      # widths that do not fit
    spec["builder"] = "small_cnn"
    (tmp_path / "m.json").write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match=r"layer features.0 \(features.0.weight\): the weights hold shape \(8, 3, 3, 3\)"):
        reprolib.load_compressed(tmp_path / "m")


def test_a_model_not_built_by_reprolib_is_refused(tmp_path):
    with pytest.raises(ReprolibError, match="not built by reprolib.create_model"):
        reprolib.save_compressed(nn.Linear(2, 2), tmp_path / "x")
