"""The bench's runtimes: a variant names one (``fp32+ort`` = ONNX Runtime), and
``time_models(..., runtime="ort")`` times each model's ONNX export under ONNX Runtime,
interleaved like the eager modules, with the same outputs as the modules."""

import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import reprolib  # noqa: F401  (before anything that imports torchvision: the shim)
from reprolib.core.registry import create_model
from reprolib.errors import ReprolibError
from reprolib.tools import bench
from reprolib.tools.bench.timing import ort_session

SIZE = (3, 32, 32)
BATCH = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return {"cnn": _cnn(), "vit": create_model("test_vit_cifar").eval()}


# --------------------------------------------------------------------------- variants


def test_parse_variant_names_the_runtime_and_keeps_the_old_keys():
    assert bench.parse_variant("fp32") == {"precision": "fp32", "channels_last": False,
                                           "compile": False, "runtime": "eager"}
    assert bench.parse_variant("bf16+cl+compile") == {"precision": "bf16",
                                                      "channels_last": True, "compile": True,
                                                      "runtime": "compile"}
    assert bench.parse_variant("fp32+ort") == {"precision": "fp32", "channels_last": False,
                                               "compile": False, "runtime": "ort"}
    assert bench.get_config("smoke", variants=("fp32", "fp32+ort")).variants[1] == "fp32+ort"


@pytest.mark.parametrize("variant", ["bf16+ort", "fp32+ort+compile", "fp32+compile+ort",
                                     "fp32+cl+ort"])
def test_ort_with_bf16_cl_or_compile_names_the_valid_combinations(variant):
    with pytest.raises(ReprolibError, match=r"valid combinations: fp32\+ort"):
        bench.parse_variant(variant)


def test_the_precision_still_comes_first():
    with pytest.raises(ReprolibError, match="unknown precision 'ort'"):
        bench.parse_variant("ort+fp32")
    with pytest.raises(ReprolibError, match="unknown variant option 'onnx'"):
        bench.parse_variant("fp32+onnx")


# --------------------------------------------------------------------------- time_models


def test_ort_times_each_model_and_reports_its_version(tiny):
    import onnxruntime

    res = bench.time_models(tiny, SIZE, BATCH, "cpu", warmup=1, repeats=3, runtime="ort")
    eager = bench.time_models(tiny, SIZE, BATCH, "cpu", warmup=1, repeats=3)
    assert set(res) == set(tiny)
    for name, r in res.items():
        assert math.isfinite(r["ms"]) and r["ms"] > 0 and r["ms_iqr"] >= 0
        assert len(r["times_ms"]) == 3
        assert r["runtime"] == "ort" and r["onnxruntime"] == onnxruntime.__version__
        print(f"{name}: ort {r['ms']:.3f} ms, eager {eager[name]['ms']:.3f} ms "
              f"(batch {BATCH}, 1 thread)")
    assert set(eager["cnn"]) == {"ms", "ms_iqr", "times_ms"}     # eager records unchanged


def test_the_ort_session_gives_the_eager_output(tiny):
    """Parity through the very session path the bench times, threads as the bench's; a model
    is exported once (a second session reuses the file) and its file goes with the model."""
    import gc

    from reprolib.tools.bench import timing

    x = torch.randn(BATCH, *SIZE, generator=torch.Generator().manual_seed(1))
    for name, model in tiny.items():
        sess, input_name = ort_session(model, SIZE, BATCH, name=name)
        path = timing._exported(model, SIZE, name)
        assert os.path.exists(path) and ort_session(model, SIZE, 1)[0] is not sess
        assert timing._exported(model, SIZE, name) == path      # not exported again
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert sess.get_session_options().intra_op_num_threads == torch.get_num_threads()
        got = sess.run(None, {input_name: x.numpy()})[0]
        with torch.inference_mode():
            ref = model(x).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0, err_msg=name)
    copy = torch.nn.Linear(4, 2)
    path = timing._exported(copy, (4,), "copy")
    del copy
    gc.collect()
    assert not os.path.exists(path)


def test_ort_is_for_fp32_inference_only(tiny):
    with pytest.raises(ReprolibError, match="ONNX Runtime is timed for inference only"):
        bench.time_models(tiny, SIZE, BATCH, "cpu", mode="train", runtime="ort")
    with pytest.raises(ReprolibError, match="precision 'fp32' without channels_last"):
        bench.time_models(tiny, SIZE, BATCH, "cpu", precision="bf16", runtime="ort")
    with pytest.raises(ReprolibError, match="unknown runtime 'onnx'; valid runtimes: eager, "
                                            "compile, ort"):
        bench.time_models(tiny, SIZE, BATCH, "cpu", runtime="onnx")


class _DataDependent(nn.Module):
    """A branch on a tensor's value: torch.export cannot trace it."""

    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


def test_a_model_that_fails_to_export_is_named(tiny):
    models = {"cnn": tiny["cnn"], "branchy": _DataDependent()}
    with pytest.raises(ReprolibError, match=r"model 'branchy' could not be exported to ONNX "
                                            r"for ONNX Runtime: \w+: \S") as e:
        bench.time_models(models, SIZE, BATCH, "cpu", runtime="ort")
    assert "\n" not in str(e.value)
