"""Crafted compressed-model files, export options and recipe keys: each is one
``ReprolibError`` naming the file / key, the problem and the valid choices, never a
traceback, a machine-sized allocation or a model with garbage weights."""

import json
import struct

import pytest
import torch

import reprolib
from reprolib import cli
from reprolib.core import compressed
from reprolib.core import export
from reprolib.errors import ReprolibError
from reprolib.methods.decompose import decompose_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small CNN and a decomposed ViT (12 low-rank layers of rank 16), saved once."""
    d = tmp_path_factory.mktemp("saved")
    reprolib.save_compressed(reprolib.create_model("test_small_cnn"), d / "cnn")
    vit = decompose_model(reprolib.create_model("test_vit_cifar"), "svd", 0.25,
                          only_if_smaller=False)
    reprolib.save_compressed(vit, d / "vit")
    return d


def _variant(saved, tmp_path, stem, edit, name="x"):
    """A copy of the saved ``stem`` whose JSON ``edit(spec)`` changed (the same weights)."""
    spec = json.loads((saved / f"{stem}.json").read_text())
    spec = edit(spec) or spec
    (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    (tmp_path / f"{name}.safetensors").write_bytes((saved / f"{stem}.safetensors").read_bytes())
    return tmp_path / name


def _set(**over):
    return lambda spec: spec.update(over)


@pytest.mark.parametrize("edit, message", [
    (_set(arch="lowrank"), 'its "arch" must be a list of steps'),
    (_set(arch=["lowrank"]), 'arch[0] must be an object {"kind": ...'),
    (_set(arch=[{"ranks": {}}]), 'arch[0] has no "kind"'),
    (_set(kwargs=[1]), '"kwargs" must be an object'),
    (_set(kwargs="num_classes=10"), '"kwargs" must be an object'),
    (_set(builder="nope"), "unknown model 'nope'; valid models: "),
    (_set(builder=3), '"builder" must be a registered model name'),
])
def test_malformed_specs_are_one_clear_error(saved, tmp_path, edit, message):
    p = _variant(saved, tmp_path, "cnn", edit)
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert msg.startswith("compressed-model file x.json") and message in msg, msg


def _rank(value, layer="blocks.0.attn.to_k"):
    def edit(spec):
        spec["arch"][0]["ranks"][layer] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_rank(-1), "rank -1"),
    (_rank(0), "rank 0"),
    (_rank(2.5), "rank 2.5"),
    (_rank(True), "rank True"),
    (_rank("abc"), "rank 'abc'"),
    (_rank(65), "rank 65"),
    (_rank(10**9), "rank 1000000000"),
])
def test_a_bad_rank_names_the_layer_and_the_valid_range(saved, tmp_path, edit, message):
    """blocks.0.attn.to_k is a 64 x 64 linear layer: ranks 1..64."""
    p = _variant(saved, tmp_path, "vit", edit)
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert "x.json" in msg and "blocks.0.attn.to_k" in msg and message in msg, msg
    assert "1..64" in msg, msg


def test_ranks_that_are_not_a_mapping_are_refused(saved, tmp_path):
    def edit(spec):
        spec["arch"][0]["ranks"] = [16]
    with pytest.raises(ReprolibError, match=r'x.json.*"ranks" must be an object'):
        reprolib.load_compressed(_variant(saved, tmp_path, "vit", edit))


def test_a_float_where_an_int_is_expected_is_refused(saved, tmp_path):
    p = _variant(saved, tmp_path, "cnn", _set(kwargs={"num_classes": 1e9}))
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert "x.json" in msg and "num_classes=1000000000.0 must be an integer" in msg, msg


def test_a_model_above_the_parameter_limit_is_refused_before_it_is_built(saved, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(compressed, "MAX_PARAMS", 100_000, raising=False)
    p = _variant(saved, tmp_path, "cnn", _set(kwargs={"num_classes": 10_000}))
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert "x.json" in msg and "348,296" in msg and "100,000" in msg, msg


def test_a_huge_model_is_counted_on_the_meta_device_not_allocated(saved, tmp_path, monkeypatch):
    """num_classes=10**9 would be a 33 x 10**9 head (132 GB): refused from the meta-device
    count, no real parameter is created."""
    p = _variant(saved, tmp_path, "cnn", _set(kwargs={"num_classes": 10**9}))
    real = torch.nn.Parameter.__new__

    def only_meta(cls, data=None, requires_grad=True):
        assert data is None or data.device.type == "meta", "a real parameter was allocated"
        return real(cls, data, requires_grad)

    monkeypatch.setattr(torch.nn.Parameter, "__new__", only_meta)
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert "x.json" in msg and "33,000,018,296 parameters" in msg, msg


def _retype(st_path, tensor=None, dtype="I32"):
    """Rewrite the safetensors header's dtype of ``tensor`` (the first F32 one) in place."""
    raw = st_path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    name = tensor or next(k for k, v in header.items()
                          if k != "__metadata__" and v["dtype"] == "F32")
    header[name]["dtype"] = dtype
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    assert len(text) == n
    st_path.write_bytes(raw[:8] + text + raw[8 + n:])
    return name


def test_a_retyped_safetensors_header_is_refused(saved, tmp_path, capsys):
    p = _variant(saved, tmp_path, "cnn", lambda s: None)
    name = _retype(tmp_path / "x.safetensors")
    with pytest.raises(ReprolibError) as e:
        reprolib.load_compressed(p)
    msg = str(e.value)
    assert "x.safetensors" in msg and name in msg and "I32" in msg and "F32" in msg, msg
    assert cli.main(["export", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and "I32" in err, err
    assert not (tmp_path / "x.onnx").exists()


def test_a_good_file_still_loads(saved):
    m = reprolib.load_compressed(saved / "vit")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_an_opset_the_exporter_does_not_support_is_refused(saved, tmp_path, capsys):
    """``--opset 99`` used to exit 0 with an opset-18 file; now exit 2 naming the range the
    installed torch.onnx supports (17 .. its ONNX_MAX_OPSET), nothing written."""
    (tmp_path / "cnn.json").write_bytes((saved / "cnn.json").read_bytes())
    (tmp_path / "cnn.safetensors").write_bytes((saved / "cnn.safetensors").read_bytes())
    assert cli.main(["export", str(tmp_path / "cnn"), "--opset", "99"]) == 2
    err = capsys.readouterr().err
    assert not list(tmp_path.glob("*.onnx"))
    lo, hi = export.opset_range()
    assert lo == export.MIN_OPSET and hi >= export.OPSET
    assert "opset=99 is not supported" in err and f"{lo}..{hi}" in err, err
    with pytest.raises(ReprolibError, match=rf"opset=99 is not supported.*{lo}\.\.{hi}"):
        export.to_onnx(reprolib.create_model("test_small_cnn"), tmp_path / "m.onnx",
                       (3, 32, 32), opset=99)


def test_an_opset_the_exporter_did_not_honour_is_refused(tmp_path, monkeypatch):
    """The exporter falls back to its own opset when a version conversion fails (18 for
    opset 17 on a convolution): the file it would write is refused, naming both."""
    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export",
                        lambda *a, **k: real(*a, **{**k, "opset_version": 18}))
    with pytest.raises(ReprolibError, match=r"opset=20 was not honoured: .* opset 18"):
        export.to_onnx(reprolib.create_model("test_small_cnn"), tmp_path / "m.onnx",
                       (3, 32, 32), opset=20)
    assert not (tmp_path / "m.onnx").exists()


def test_quickstart_applies_the_recipe_augmentation(monkeypatch):
    """``-p train.randaugment=...`` reaches quickstart's training loader (it was recorded in
    the key but never applied)."""
    from reprolib.configs import get_config
    from reprolib.experiments import quickstart

    got = {}
    real = quickstart.load_data

    class Stop(Exception):
        pass

    def load(cfg, batch, **kw):
        got["data"] = real(cfg, batch, **kw)
        raise Stop

    monkeypatch.setattr(quickstart, "load_data", load)
    cfg = get_config("quickstart", "smoke", **{"train.randaugment": "rand-m9-n1",
                                               "train.random_erasing": 0.25})
    stage = quickstart.stages(cfg)[0]
    with pytest.raises(Stop):
        stage.fn(stage)
    extra = got["data"].train.extra
    assert repr(extra) == "BatchAugment(randaugment='rand-m9-n1', random_erasing=0.25)"
    assert got["data"].train.batch_size == cfg.train.batch_size


def test_an_invalid_randaugment_spec_is_refused_at_config_time():
    from reprolib.configs import get_config

    with pytest.raises(ReprolibError, match="randaugment='randXYZ'"):
        get_config("quickstart", "smoke", **{"train.randaugment": "randXYZ"})
