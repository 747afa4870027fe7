"""Every method's compressed model leaves the package: torch.onnx (opset >= 17) with ONNX
Runtime output equal to PyTorch's, torch.export, tied weights kept one initializer, and
``reprolib export PATH --format onnx`` on a saved compressed model."""

import json

import numpy as np
import onnx
import pytest
import torch

import reprolib
from reprolib import cli
from reprolib.core import export
from reprolib.errors import ReprolibError
from reprolib.experiments.overview import build_case

# One case per method (the decomposed ViT is VTP-pruned first); tiny models, random weights
# and scores, BatchNorm statistics calibrated on random images.
CASES = ["sidt", "vtp_svd", "vit_pe", "resnet50_pe", "metaformer_nas",
         "vgg19_template", "resnet50_template", "googlenet_template", "mobilenet_template"]
TIED = {"vit_pe", "resnet50_pe"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("case", CASES)
def test_every_method_exports_with_parity(case, tmp_path):
    model, size = build_case(case, "tiny", template_width=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = export.export_check(model, tmp_path / f"{case}.onnx", size)
    assert (tmp_path / f"{case}.onnx").exists()
    assert r["opset"] >= 17
    assert r["max_abs_diff"] < 1e-4, r
    assert r["max_abs_output"] > 1e-2           # a real comparison, not of zeros
    assert r["torch_export_max_abs_diff"] < 1e-5
    assert r["batch_size"] == 3                 # not the export's example batch: dynamic batch
    # the export left the model as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the file holds the compressed model's weights (each shared tensor once), not more:
    # a pruned model's file is physically smaller, not the dense weights with masks
    assert r["onnx_weights"] <= r["params"] + sum(b.numel() for b in model.buffers())
    ties = r["ties"]
    if case in TIED:
        assert ties["stay_tied"] is True and len(ties["copies"]) >= 2, ties
    else:
        assert ties["stay_tied"] is None and not ties["tied"]


def test_copied_tied_weight_is_detected(tmp_path):
    """The tie check can fail: a file that stores W and W^T separately is reported."""
    m = reprolib.create_model("vit_pe_test").eval()
    prog = export.to_exported_program(m, (3, 32, 32))
    uses = export.parameter_uses(prog)
    path = export.to_onnx(m, tmp_path / "v.onnx", (3, 32, 32), program=prog)
    om = onnx.load(str(path))
    w = m.blocks[0].mlp.weight.detach().numpy()
    om.graph.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(w.T), "copy"))
    onnx.save(om, str(tmp_path / "copied.onnx"))
    t = export.tied_weights(m, tmp_path / "copied.onnx", uses)
    assert t["stay_tied"] is False and t["copies"]["blocks.0.mlp.weight"] == 2


def test_bad_input_is_one_clear_error(tmp_path):
    m = reprolib.create_model("test_small_cnn")
    with pytest.raises(ReprolibError, match="opset=13 is too old"):
        export.to_onnx(m, tmp_path / "m.onnx", (3, 32, 32), opset=13)
    with pytest.raises(ReprolibError, match="input_size"):
        export.to_onnx(m, tmp_path / "m.onnx", (3, 0, 32))
    with pytest.raises(ReprolibError, match="must end in .onnx"):
        export.to_onnx(m, tmp_path / "m.txt", (3, 32, 32))
    with pytest.raises(ReprolibError, match="unknown format 'tflite'; valid formats: onnx"):
        export.export_saved(tmp_path / "m", "tflite")
    assert not list(tmp_path.iterdir())


def test_input_size_of_saved_models():
    assert export.input_size_of(reprolib.create_model("swin_t", num_classes=10)) == (3, 224, 224)
    assert export.input_size_of(reprolib.create_model("vit_pe_small")) == (3, 224, 224)
    assert export.input_size_of(reprolib.create_model("test_vit_cifar")) == (3, 32, 32)
    assert export.input_size_of(reprolib.create_model("test_metaformer")) == (3, 16, 16)
    assert export.input_size_of(reprolib.create_model("vgg19_cifar_tiny")) == (3, 32, 32)


def test_cli_exports_a_saved_compressed_model(tmp_path, capsys):
    model, _ = build_case("vit_pe", "tiny")
    js = reprolib.save_compressed(model, tmp_path / "vitpe")
    assert cli.main(["export", str(tmp_path / "vitpe"), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "vitpe.onnx").exists() and "opset 18" in out
    assert "tied weights, each one initializer" in out
    # the .onnx runs under ONNX Runtime like the saved model
    x = export.example_input((3, 32, 32), batch_size=5, seed=3)
    got = export.run_onnx(tmp_path / "vitpe.onnx", x)
    with torch.no_grad():
        ref = reprolib.load_compressed(js).eval()(x).numpy()
    assert np.abs(got - ref).max() < 1e-4
    assert json.loads(js.read_text())["builder"] == "vit_pe_test"


def test_cli_bad_input_exits_2_without_output(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "missing")]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err
    model = reprolib.create_model("test_small_cnn")
    reprolib.save_compressed(model, tmp_path / "m")
    assert cli.main(["export", str(tmp_path / "m"), "--opset", "11"]) == 2
    assert "opset=11 is too old" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
